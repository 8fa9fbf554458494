"""The ``steps`` layer: each trained row's first updates, loss by loss, on a fixed batch.

For every phase of the row's schedule (XRayGAN: the L2 warm-up, then the GAN phase of each stage) the probe
builds the method from its seed and the stage as a run does (``begin_stage``: critics, optimisers, XRayGAN's
VCN, AttnGAN's DAMSM, the helpers untrained) on the first ``PROBE_CASES`` train cases, then takes
``PROBE_STEPS`` steps on fixed batches and keeps every loss. Each step has its own measured tolerance: the
first step has seen no update, so kernel paths differ there by forward rounding only (about 1e-6) and any
change to a loss term or weight shows; the later ones show the optimiser, where Adam's first updates
amplify rounding (the tolerance file says by how much). The losses of
the recording machine are committed in ``leaderboards/check/steps.json``.
"""

import dataclasses
import json
import tempfile
from pathlib import Path

import torch

from benchmark.core.distributed import init_distributed
from benchmark.core.io import atomic_write
from benchmark.core.seeds import derive_seed, seed_everything
from benchmark.data.datasets import get_dataset
from benchmark.data.text import Vocab
from benchmark.pipeline.check import Comparison, Row, intra_op_threads, recorded_config, stale
from benchmark.pipeline.check.tolerances import Tolerances
from benchmark.pipeline.config import RunConfig
from methods import get_method
from methods.base import PairedData
from methods.training import StagedMethod, prepare_device

LAYER = "steps"
PROBE_CASES = 64
PROBE_STEPS = 3
PROBE_THREADS = 1  # one intra-op thread: the same reduction order on any core count
STEPS_FILE = "check/steps.json"  # under leaderboards/


def untrained_helpers(model):
    """``model`` with every pretrained helper (a nested config with ``epochs``: XRayGAN's VCN, AttnGAN's DAMSM)
    left at its seeded initialisation: the probe tests the step's code path, where the helper's own training
    (tested on its own) would grow the rounding differences this layer must stay clear of."""
    helpers = {
        f.name: dataclasses.replace(value, epochs=0)
        for f in dataclasses.fields(model)
        if dataclasses.is_dataclass(value := getattr(model, f.name)) and hasattr(value, "epochs")
    }
    return dataclasses.replace(model, **helpers)


def probe(cfg: RunConfig, threads: int = PROBE_THREADS) -> dict[str, list[dict[str, float]]] | None:
    """{"<stage>/<phase>": [losses of step 1, 2, 3]} for ``cfg``'s method, or None for one that does not train
    in steps (the dummy floor). Each phase starts from the method's seeded initialisation, so a phase's first
    step has seen no update at all: its losses differ between kernel paths by forward rounding only."""
    with intra_op_threads(threads):
        return _first_steps(cfg)


def _first_steps(cfg: RunConfig) -> dict[str, list[dict[str, float]]] | None:
    cfg = dataclasses.replace(cfg, model=untrained_helpers(cfg.model))
    dataset = get_dataset(cfg.dataset, cfg.data)
    train_cases = dataset.splits().train
    vocab = Vocab.build((c.report.findings, c.report.impression) for c in train_cases)
    train = PairedData.of(dataset.images(train_cases[:PROBE_CASES]), vocab)
    device = torch.device("cpu")

    def fresh():
        seed_everything(cfg.seed)
        method = get_method(cfg.method)(cfg.model, vocab, image_size=cfg.data.image_size, device=device, seed=cfg.seed)
        method.val = None  # no held-out gate: the probe is about the update, not the VCN's quality
        return method

    if not isinstance(fresh(), StagedMethod):
        return None
    prepare_device(device)
    init_distributed(device)
    out = {}
    with tempfile.TemporaryDirectory(prefix="xbench-probe-") as run_dir:
        for phase in fresh().phases():
            key = f"{phase.stage}/{phase.name}"
            if key in out:
                continue
            method = fresh()
            state = method.begin_stage(phase.stage, train, Path(run_dir) / key.replace("/", "-"))
            method.set_epoch(state, phase, 0)
            losses = []
            for step in range(PROBE_STEPS):
                seed_everything(derive_seed(cfg.seed, "probe", key, step))
                index = (torch.arange(phase.batch_size) + step * phase.batch_size) % len(train)
                losses.append({k: float(v) for k, v in sorted(method.train_step(state, phase, index).items())})
            out[key] = losses
    return out


def probe_row(row: Row) -> dict | None:
    _, recorded = row.first
    return probe(recorded_config(recorded))


def load_golden(leaderboards: Path) -> dict:
    path = leaderboards / STEPS_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def save_golden(leaderboards: Path, golden: dict) -> Path:
    path = leaderboards / STEPS_FILE
    atomic_write(path, json.dumps(golden, indent=1, sort_keys=True) + "\n")
    return path


def golden_entry(row: Row, losses: dict) -> dict:
    _, recorded = row.first
    return {
        "config_hash": recorded.config_hash,
        "cases": PROBE_CASES,
        "steps": PROBE_STEPS,
        "cpu": recorded.versions.get("cpu"),
        "losses": losses,
    }


def compare(record: str, golden: dict, now: dict, tolerances: Tolerances) -> list[Comparison]:
    rows = []
    for key, steps in golden.items():
        for i, losses in enumerate(steps):
            for name, old in losses.items():
                tol = tolerances.loss(f"{name}@{i + 1}")
                value = now.get(key, [{}] * len(steps))[i].get(name) if len(now.get(key, [])) > i else None
                if value is None:
                    rows.append(Comparison(LAYER, record, key, f"{name}@{i + 1}", old, None, "", False, "missing"))
                else:
                    ok = tol.allows(old, value)
                    rows.append(Comparison(LAYER, record, key, f"{name}@{i + 1}", old, value, tol.describe(), ok))
    return rows


def check_row(row: Row, tolerances: Tolerances, leaderboards: Path) -> list[Comparison]:
    path, recorded = row.first
    if (why := stale(LAYER, path, recorded)) is not None:
        return [why]
    entry = load_golden(leaderboards).get(row.name)
    if not get_method(recorded.method).trains:  # a floor fitted without training steps
        return []
    if entry is None or entry["config_hash"] != recorded.config_hash:
        why = f"no first steps recorded for {row.name} at {recorded.config_hash}; see scripts/measure_tolerances.py"
        return [Comparison(LAYER, path.name, "-", "steps", None, None, "", False, why)]
    now = probe_row(row)
    return compare(path.name, entry["losses"], now or {}, tolerances)
