"""Re-evaluate committed records from their stored samples, under this xbench's metrics, and keep their evidence.

    python scripts/reevaluate_records.py [RECORD.json ...]      (default: every record that has samples)

For each record with ``<record>.samples.npz``: the samples are evaluated again with the frozen judges at the
record's thread count, the metrics block is replaced (the method's own ``vc_self``, which only training has, is
kept), ``<record>.evidence.npz`` is written beside it, the record's configuration is brought to this schema
(settings removed since are dropped, so its hash changes) and the first-steps golden file follows the new hash
(the steps probe does not read the eval settings). Training provenance (git sha, CPU, timings) is the
recording's; the re-evaluation is named in ``metrics.provenance.re_evaluated``. A record without samples
cannot be re-evaluated: it is listed, and the leaderboard marks it until it is re-recorded.

Run it from a clean worktree of a commit (records come from committed trees); every file is written atomically.
"""

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from benchmark.data.datasets import get_dataset
from benchmark.pipeline.check.steps import load_golden, save_golden
from benchmark.pipeline.config import config_from_dict
from benchmark.pipeline.leaderboard import LEADERBOARDS
from benchmark.pipeline.results import environment, evidence_path, load_result, now, save_evidence, save_result
from benchmark.pipeline.runner import evaluate_samples, load_samples, samples_path
from metrics import METRICS

REMOVED = {"eval": ("bootstrap_fid",)}  # settings this xbench no longer has: FID and KID always have intervals
TRAINING_SIDE = ("vc_self",)


def migrate(config: dict) -> dict:
    """A stored configuration without the settings removed since (``REMOVED``), and with every metric registered
    since when its metric list was the default of its day (a prefix of today's registry order: metrics are only
    ever appended)."""
    config = {k: {n: v for n, v in part.items() if n not in REMOVED.get(k, ())} if isinstance(part, dict) else part
              for k, part in config.items()}  # fmt: skip
    listed = list(config.get("eval", {}).get("metrics", ()))
    if listed and listed == list(METRICS)[: len(listed)]:
        config["eval"] = config["eval"] | {"metrics": list(METRICS)}
    return config


def reevaluate(path: Path, env: dict) -> tuple[str, str]:
    """Re-evaluate one record in place; (old config hash, new config hash)."""
    old = load_result(path)
    cfg = config_from_dict(migrate(old.config))
    ids, fake = load_samples(samples_path(path))
    dataset = get_dataset(cfg.dataset, cfg.data)
    test = dataset.images(dataset.splits().test)
    if ids != tuple(c.case_id for c in test.cases):
        raise SystemExit(f"{samples_path(path)}: its cases are not the test split of {cfg.dataset}; re-record it")
    torch.set_num_threads(int(old.versions.get("threads", torch.get_num_threads())))
    evidence: dict = {}
    metrics = evaluate_samples(cfg, dataset, test, np.ascontiguousarray(fake), evidence)
    for name, value in old.metrics.get("pair", {}).items():
        if name.startswith(TRAINING_SIDE):
            metrics["pair"][name] = value
    metrics["provenance"]["re_evaluated"] = {
        "from": samples_path(path).name,
        "git_sha": env["git_sha"],
        "git_dirty": env["git_dirty"],
        "cpu": env["cpu"],
        "threads": torch.get_num_threads(),
        "date": now(),
    }
    new = dataclasses.replace(
        old,
        metrics=metrics,
        config=cfg.to_dict(),
        config_hash=cfg.config_hash,
        run_id=old.run_id.removesuffix(old.config_hash) + cfg.config_hash,
    )
    save_evidence(evidence_path(path), evidence)
    save_result(new, path)
    return old.config_hash, cfg.config_hash


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="*", type=Path)
    args = parser.parse_args(argv)
    records = args.records or sorted((LEADERBOARDS / "records").glob("*/*.json"))
    env = environment(torch.device("cpu"))
    if env["git_dirty"]:
        print("warning: the working tree is dirty; re-evaluate from a clean worktree of a commit", file=sys.stderr)
    rehash, missing = {}, []
    for path in records:
        if not samples_path(path).is_file():
            missing.append(path.name)
            continue
        before, after = reevaluate(path, env)
        rehash[before] = after
        print(f"re-evaluated {path.name} ({before} -> {after})", flush=True)
    golden = load_golden(LEADERBOARDS)
    for entry in golden.values():
        entry["config_hash"] = rehash.get(entry["config_hash"], entry["config_hash"])
    save_golden(LEADERBOARDS, golden)
    if missing:
        print(f"no samples, not re-evaluated (re-record them): {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
