"""``xbench bench``: every method's training throughput in every mode, plus one evaluation, as one document.

The document (JSON) names the device, torch, the git commit and the setting beside the rows, so a figure
is never separated from what produced it. ``--record`` keeps it under ``leaderboards/speed/``, from which
``leaderboards/speed.md`` is rendered next to the official code's figures.
"""

import json
import re
from pathlib import Path

import torch

from benchmark.core.errors import XbenchError, unknown_name
from benchmark.core.io import atomic_write
from benchmark.pipeline.bench import report
from benchmark.pipeline.bench.training import MODES, OPENI_TRAIN_CASES, schedule_totals, time_method
from benchmark.pipeline.config import SETTINGS
from benchmark.pipeline.results import environment, now
from methods import METHODS
from methods.training import StagedMethod

SCHEMA = 1
# Every method with a training step to time (the dummy floor has none).
TRAINABLE = tuple(name for name, cls in METHODS.items() if issubclass(cls, StagedMethod))


def run_suite(
    methods: tuple[str, ...] = TRAINABLE,
    setting: str = "tiny",
    modes: tuple[str, ...] = ("fp32", "bf16"),
    *,
    steps: int = 20,
    warmup: int = 5,
    evaluation: bool = True,
    device: str | None = None,
    train_cases: int = OPENI_TRAIN_CASES,
    log=lambda message: None,
) -> dict:
    """Time every (method, mode). On the CPU, where autocast is off, ``bf16`` would repeat ``fp32`` and is
    skipped; ``nchw`` and ``compile`` run in fp32 there (each row names its precision)."""
    for name in methods:
        if name not in METHODS:
            raise XbenchError(f"unknown method {name!r}; choose from: {', '.join(TRAINABLE)}")
    for mode in modes:
        if mode not in MODES:
            raise XbenchError(f"unknown bench mode {mode!r}; choose from: {', '.join(MODES)}")
    if setting not in SETTINGS:
        raise unknown_name("setting", setting, SETTINGS)
    if steps < 1 or warmup < 1:
        raise XbenchError(f"--steps and --warmup must be at least 1, not {steps} and {warmup}")
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    env = environment(dev)
    rows, skipped = [], []
    for method in methods:
        for mode in modes:
            if dev.type != "cuda" and mode == "bf16":
                skipped.append({"method": method, "mode": mode, "why": "bf16 autocast runs on CUDA only"})
                continue
            if mode == "compile" and method != "xraygan":
                skipped.append({"method": method, "mode": mode, "why": "only XRayGAN has a compile option"})
                continue
            log(f"timing {method} ({mode}, {setting})")
            rows += time_method(method, setting, mode, device=dev, warmup=warmup, steps=steps, train_cases=train_cases)
    doc = {
        "schema": SCHEMA,
        "created": now(),
        "setting": setting,
        "device": env["device"],
        "torch": env["torch"],
        "cuda": env["cuda"],
        "git_sha": env["git_sha"],
        "git_dirty": env["git_dirty"],
        "modes": list(modes),
        "methods": list(methods),
        "protocol": {"warmup": warmup, "steps": steps, "statistic": "median", "train_cases": train_cases},
        "rows": rows,
        "skipped": skipped,
        "schedule": schedule_totals(rows),
        "evaluation": None,
    }
    if evaluation:  # last, and never fatal: the training figures above must not be lost with it
        log(f"timing one evaluation ({setting})")
        try:
            from benchmark.pipeline.bench.evaluation import time_evaluation  # needs torch-fidelity and the reports

            doc["evaluation"] = time_evaluation(setting, method=methods[0], device=str(dev))
        except (ImportError, XbenchError) as err:
            why = f"evaluation not timed: {err}"
            doc["skipped"].append({"method": "evaluation", "mode": "-", "why": why})
            log(why)
    return doc


def record_path(doc: dict, leaderboards: Path) -> Path:
    """``leaderboards/speed/<device>_<setting>_<modes>.json``: one document per device kind, setting and set of
    modes, so a GPU session can record the quick modes and ``compile`` (slow to compile) in separate calls."""
    slug = re.sub(r"[^a-z0-9]+", "-", doc["device"].lower()).strip("-")
    return leaderboards / "speed" / f"{slug}_{doc['setting']}_{'-'.join(doc['modes'])}.json"


def load_records(leaderboards: Path) -> list[dict]:
    docs = []
    for path in sorted((leaderboards / "speed").glob("*.json")):
        doc = json.loads(path.read_text())
        if doc.get("schema") != SCHEMA:
            raise XbenchError(f"{path}: bench schema {doc.get('schema')} is not {SCHEMA}; re-run xbench bench")
        docs.append(doc)
    return docs


def save_document(doc: dict, out: Path, leaderboards: Path, *, record: bool) -> list[Path]:
    """Write the document to ``out``; with ``record`` also keep it under ``leaderboards/speed/`` and re-render
    ``leaderboards/speed.md`` from every kept document. The paths written."""
    text = json.dumps(doc, indent=1) + "\n"
    atomic_write(out, text)
    if not record:
        return [out]
    path = record_path(doc, leaderboards)
    atomic_write(path, text)
    reference = report.load_reference(leaderboards / "speed_reference.toml")
    atomic_write(leaderboards / "speed.md", report.render_markdown(load_records(leaderboards), reference))
    return [out, path, leaderboards / "speed.md"]
