"""``xbench bench``: every method's training throughput in every mode, plus one evaluation, as one document.

The document (JSON) names the device, torch, the git commit and the setting beside the rows, so a figure
is never separated from what produced it. ``--record`` keeps it under ``leaderboards/speed/``, from which
``leaderboards/speed.md`` is rendered next to the official code's figures.
"""

import json
import re
from collections.abc import Callable
from pathlib import Path

import torch

from benchmark.core.deadline import TimeLimit, hit_limit, time_limit
from benchmark.core.errors import XbenchError, unknown_name
from benchmark.core.io import atomic_write
from benchmark.pipeline.bench import report
from benchmark.pipeline.bench.training import MODES, OPENI_TRAIN_CASES, missing_options, phase_rows, schedule_totals
from benchmark.pipeline.config import SETTINGS
from benchmark.pipeline.results import environment, now
from methods import METHODS

SCHEMA = 1
# Every registered method: each times the steps it reports (``Method.training_steps``; the dummy floor has none).
TRAINABLE = tuple(METHODS)


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
    row_limit_s: float | None = None,
    save: Callable[[dict], object] | None = None,
    log=lambda message: None,
) -> dict:
    """Time every (method, mode); the bf16 modes autocast on either device (``MethodConfig.cpu_bf16`` on the
    CPU), and each row names its precision.

    Each (method, mode) gets ``row_limit_s`` seconds (and so does the evaluation): one that runs past it, or
    fails, keeps the phases it finished and is listed under ``skipped`` with why, and the next one starts.
    ``save`` gets the document after every timed phase, so a run killed from outside (a device call's time
    limit) leaves every finished row on disk; ``complete`` turns true only at the end."""
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
    if row_limit_s is not None and row_limit_s <= 0:
        raise XbenchError(f"the time limit per method and mode must be positive, not {row_limit_s}")
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    env = environment(dev)
    doc = {
        "schema": SCHEMA,
        "created": now(),
        "complete": False,  # true once every (method, mode) and the evaluation had their turn
        "setting": setting,
        "device": env["device"],
        "torch": env["torch"],
        "cuda": env["cuda"],
        "git_sha": env["git_sha"],
        "git_dirty": env["git_dirty"],
        "modes": list(modes),
        "methods": list(methods),
        "protocol": {
            "warmup": warmup,
            "steps": steps,
            "statistic": "median",
            "train_cases": train_cases,
            "row_limit_s": row_limit_s,  # per method and mode, and for the evaluation
        },
        "rows": [],
        "skipped": [],
        "schedule": [],
        "evaluation": None,
    }
    finished: set[tuple[str, str]] = set()  # the (method, mode)s whose every phase was timed

    def keep() -> None:
        # A projected schedule only for what was timed whole: a cut one would look shorter than it is.
        doc["schedule"] = schedule_totals([r for r in doc["rows"] if (r["method"], r["mode"]) in finished])
        if save is not None:
            save(doc)

    for method in methods:
        for mode in modes:
            missing = missing_options(method, mode)
            if missing:
                why = f"{method} has no {', '.join(missing)} option"
                doc["skipped"].append({"method": method, "mode": mode, "why": why})
                continue
            log(f"timing {method} ({mode}, {setting})")
            timed = 0
            try:
                with time_limit(row_limit_s):
                    rows = phase_rows(
                        method, setting, mode, device=dev, warmup=warmup, steps=steps, train_cases=train_cases
                    )
                    for row in rows:
                        doc["rows"].append(row)
                        timed += 1
                        keep()
                finished.add((method, mode))
                if not timed:
                    doc["skipped"].append({"method": method, "mode": mode, "why": "trains in no steps"})
            except Exception as err:  # one failing row must not cost the others (a compile crash, a GPU OOM)
                why = _why_stopped(err, row_limit_s, timed)
                doc["skipped"].append({"method": method, "mode": mode, "why": why})
                log(f"{method} ({mode}): {why}")
            keep()
    if evaluation:  # last, and never fatal: the training figures above must not be lost with it
        log(f"timing one evaluation ({setting})")
        try:
            from benchmark.pipeline.bench.evaluation import time_evaluation  # needs torch-fidelity and the reports

            with time_limit(row_limit_s):
                # Generation timed with the first method that trains (the floor's mean image costs nothing).
                timed_methods = [m for m in methods if any(r["method"] == m for r in doc["rows"])]
                doc["evaluation"] = time_evaluation(setting, method=(timed_methods or methods)[0], device=str(dev))
        except (ImportError, XbenchError, TimeLimit) as err:
            why = f"evaluation not timed: {err}"
            doc["skipped"].append({"method": "evaluation", "mode": "-", "why": why})
            log(why)
    doc["complete"] = True
    keep()
    return doc


def _why_stopped(err: Exception, limit: float | None, timed: int) -> str:
    kept = f"{timed} phase row(s) kept"
    if hit_limit(err):
        return f"cut at its {limit:g} s limit; {kept}"
    first_line = (str(err).strip().splitlines() or [""])[0][:300]
    return f"failed: {type(err).__name__}: {first_line}; {kept}"


def record_path(doc: dict, leaderboards: Path) -> Path:
    """``leaderboards/speed/<device>_<setting>_<modes>[_<methods>].json``: one document per device kind, setting,
    set of modes and, when not every method, set of methods. So one device call can time the baselines and
    XRayGAN, and XRayGAN compiled (slow to compile), as separate runs, each with its own limits."""
    slug = re.sub(r"[^a-z0-9]+", "-", doc["device"].lower()).strip("-")
    some = "" if sorted(doc["methods"]) == sorted(TRAINABLE) else "_" + "-".join(doc["methods"])
    return leaderboards / "speed" / f"{slug}_{doc['setting']}_{'-'.join(doc['modes'])}{some}.json"


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
