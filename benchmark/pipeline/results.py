"""``result.json`` (schema 1): one run's numbers and everything needed to trust and re-run them.

Never rounded on write (rounding happens in the leaderboard renderer only); written atomically.
"""

import dataclasses
import io
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmark.core.errors import XbenchError
from benchmark.core.io import atomic_write

SCHEMA = 1
REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class RunResult:
    run_id: str
    method: str
    dataset: str
    variant: str
    seed: int
    setting: str
    config_hash: str
    git_sha: str
    git_dirty: bool
    versions: dict  # python, torch, cuda, xbench, threads, cpu (model), cpu_capability (torch's kernel path)
    device: str
    n_test_cases: int
    metrics: dict  # {"frontal": {name: value, name_ci: [lo, hi], name_n: N}, "lateral": ..., "pair": ...}
    timing_s: dict  # fit, generate, evaluate
    throughput: dict  # train_pairs_per_s
    config: dict  # the resolved RunConfig, so a record can be re-run by ``xbench check``
    created: str
    schema: int = SCHEMA
    # Added within schema 1 (older records lack them and load with them empty):
    budget: dict = dataclasses.field(default_factory=dict)  # Method.budget: epochs, pairs_seen, updates
    training: dict = dataclasses.field(default_factory=dict)  # Method.fit_summary (e.g. the VCN's val AUROC)
    sample_spread: dict = dataclasses.field(default_factory=dict)  # per view: how much samples vary by report


OPTIONAL_FIELDS = ("budget", "training", "sample_spread")


def save_result(result: RunResult, path: Path) -> Path:
    atomic_write(path, json.dumps(dataclasses.asdict(result), indent=2, sort_keys=True) + "\n")
    return path


def load_result(path: Path) -> RunResult:
    """A result file, checked against the schema: a corrupt or foreign file is an XbenchError."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise XbenchError(f"no result file {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise XbenchError(f"corrupt result file {path}: not valid JSON ({err}); re-run or delete it") from None
    fields = {f.name for f in dataclasses.fields(RunResult)}
    required = fields - set(OPTIONAL_FIELDS)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not required <= set(data) <= fields:
        missing = sorted(required - set(data)) if isinstance(data, dict) else sorted(required)
        raise XbenchError(f"corrupt result file {path}: not a schema-{SCHEMA} result (missing {missing[:4]})")
    if not isinstance(data["metrics"], dict) or not all(isinstance(v, dict) for v in data["metrics"].values()):
        raise XbenchError(f"corrupt result file {path}: 'metrics' must map views to metric values")
    return RunResult(**data)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# What runs write into the tree (``--record``): not a change to what made the run. Without this, the second of
# several seeds recorded from one clean checkout would be marked dirty by the first one's record.
RUN_OUTPUTS = ("leaderboards/records",)


def git_state() -> tuple[str, bool]:
    """(commit sha, whether the tree has uncommitted changes other than records); ("unknown", True) outside a git
    clone."""
    status = ["git", "status", "--porcelain", "--", ".", *(f":(exclude){p}" for p in RUN_OUTPUTS)]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(status, cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown", True
    return sha.stdout.strip(), bool(dirty.stdout.strip())


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what ``platform`` knows): training rounds differently
    on another CPU type, so a record says which one made it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_capability() -> str:
    """The instruction set torch's CPU kernels dispatch to here (e.g. AVX512, AVX2; ``ATEN_CPU_CAPABILITY``
    caps it): with the CPU model, what decides how a training run rounds."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def environment(device) -> dict:
    """What ran the numbers: env.json of every run directory."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    sha, dirty = git_state()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": torch.cuda.get_device_name(device) if str(device).startswith("cuda") else "cpu",
        "cpu": cpu_model(),
        "cpu_capability": cpu_capability(),
        "xbench": ver("xbench"),
        "packages": {p: ver(p) for p in ("torchvision", "torch-fidelity", "scikit-image", "numpy", "torchxrayvision")},
        "git_sha": sha,
        "git_dirty": dirty,
    }


def record_name(result: RunResult) -> str:
    """A record's file stem under ``leaderboards/records/<dataset>/``."""
    return f"{result.method}_{result.variant}_{result.setting}_s{result.seed}"


def evidence_path(record: Path) -> Path:
    """Where a record's evidence is kept: ``<record>.evidence.npz`` beside ``<record>.json``."""
    return record.with_suffix(".evidence.npz")


def save_evidence(path: Path, evidence: dict) -> None:
    """``metrics.evaluate``'s evidence in one compressed file: "<what>/<view>" -> array, as computed (a record's
    intervals are rebuilt from it exactly)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **evidence)
    atomic_write(path, buffer.getvalue())


def load_evidence(path: Path) -> dict[str, np.ndarray]:
    """What ``save_evidence`` wrote; a missing or corrupt file is an XbenchError naming the fix."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise XbenchError(f"no evidence file {path}; re-evaluate the record (scripts/reevaluate_records.py)") from None
    except (OSError, ValueError) as err:
        raise XbenchError(f"corrupt evidence file {path} ({err}); re-evaluate the record") from None
