"""One run, in one direction: config -> data -> vocabulary -> fit -> generate -> evaluate -> result.json.

Run directory ``runs/<method>_<dataset>_<variant>_s<seed>_<cfghash>/``: config.json, env.json, vocab.json,
log.jsonl, ckpt/, samples/{frontal,lateral}/<case_id>.png, samples.npz, evidence.npz (the per-case values and
replicates behind the metrics) and, last of all, result.json.
"""

import dataclasses
import io
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmark.core.checkpoints import save_checkpoint
from benchmark.core.distributed import world
from benchmark.core.errors import XbenchError
from benchmark.core.io import atomic_write
from benchmark.core.seeds import derive_seed
from benchmark.data.datasets import Case, get_dataset
from benchmark.data.images import save_png, to_uint8
from benchmark.data.text import Vocab
from benchmark.pipeline import leaderboard
from benchmark.pipeline.config import RunConfig
from benchmark.pipeline.results import (
    RunResult,
    environment,
    evidence_path,
    now,
    record_name,
    save_evidence,
    save_result,
)
from methods import get_method
from methods.base import PairedData, default_device
from metrics import ImageSet, evaluate, get_metric

RUNS_DIR = Path("runs")


def run(
    cfg: RunConfig, *, runs_dir: Path = RUNS_DIR, resume: Path | None = None, record: bool = False
) -> RunResult | None:
    """Train, generate the test split, evaluate; returns (and writes) the result. Under ``torchrun`` every rank
    trains and only rank 0 writes, generates and evaluates; the other ranks return None after training."""
    # Data first: splits that cannot train or be evaluated stop the run before anything is written.
    dataset = get_dataset(cfg.dataset, cfg.data)
    splits = dataset.splits()
    check_splits(cfg, splits)

    main = world().is_main
    run_dir = _prepare_run_dir(cfg, runs_dir, resume) if main else resume or runs_dir / cfg.run_id
    device = default_device()
    env = environment(device)
    if main:
        _write_json(run_dir / "env.json", env)

    # The vocabulary of the train split.
    vocab = Vocab.build((c.report.findings, c.report.impression) for c in splits.train)
    if main:
        vocab.save(run_dir / "vocab.json")
    train = PairedData.of(dataset.images(splits.train), vocab)
    val = PairedData.of(dataset.images(splits.val), vocab) if splits.val else None

    # Fit.
    method = get_method(cfg.method)(cfg.model, vocab, image_size=cfg.data.image_size, device=device, seed=cfg.seed)
    start = time.perf_counter()
    method.fit(train, val, run_dir, resume=resume is not None)
    fit_s = time.perf_counter() - start
    save_checkpoint(method.state_dict(), run_dir / "ckpt" / "final.pt")  # what `xbench generate` loads
    if not main:
        return None

    # Generate the test split, one seed per case: sha256 of (run seed, case id).
    test = dataset.images(splits.test)
    start = time.perf_counter()
    tokens = vocab.encode([(c.report.findings, c.report.impression) for c in test.cases])
    views = method.generate(tokens, [derive_seed(cfg.seed, c.case_id) for c in test.cases])
    fake = np.stack([to_uint8(views.frontal[:, 0].numpy()), to_uint8(views.lateral[:, 0].numpy())], axis=1)
    write_samples(run_dir / "samples", test.cases, fake)
    generate_s = time.perf_counter() - start

    # Evaluate against the real test images. The judges and the real floor learn from the dataset's FULL
    # train + val reference whatever the run's caps, so every run at one resolution shares one judge.
    start = time.perf_counter()
    ids = tuple(c.case_id for c in test.cases)
    evidence: dict = {}
    metrics = evaluate_samples(cfg, dataset, test, fake, evidence)
    own = method.self_consistency(fake[:, 0], fake[:, 1])
    if own is not None:  # the method's own VCN on its samples: optimising against one's own judge shows
        metrics["pair"] |= {"vc_self": float(np.mean(own)), "vc_self_n": len(own)}
    evaluate_s = time.perf_counter() - start

    result = RunResult(
        run_id=run_dir.name,
        method=cfg.method,
        dataset=cfg.dataset,
        variant=cfg.variant,
        seed=cfg.seed,
        setting=cfg.setting,
        config_hash=cfg.config_hash,
        git_sha=env["git_sha"],
        git_dirty=env["git_dirty"],
        versions={
            "python": env["python"],
            "torch": env["torch"],
            "cuda": env["cuda"],
            "xbench": env["xbench"],
            "threads": torch.get_num_threads(),
            "cpu": env["cpu"],
            "cpu_capability": env["cpu_capability"],
        },  # training rounds differently with another thread count, CPU type or kernel path
        device=env["device"],
        n_test_cases=len(ids),
        metrics=metrics,
        timing_s={"fit": fit_s, "generate": generate_s, "evaluate": evaluate_s},
        throughput={"train_pairs_per_s": method.pairs_seen / max(fit_s, 1e-9)},
        config=cfg.to_dict(),
        created=now(),
        budget=method.budget(len(train)),
        training=method.fit_summary,
        sample_spread=sample_spread(fake, test.pixels),
    )
    save_samples(run_dir / "samples.npz", ids, fake)
    save_evidence(run_dir / "evidence.npz", evidence)
    save_result(result, run_dir / "result.json")
    if record:
        record_result(result, run_dir)
    return result


# Every method pairs a train case with another (VCN, DAMSM, the matching pretraining), and FID, KID and vc compare
# sets of test cases: with fewer than two of either, training crashes or only SSIM is left.
MIN_TRAIN_CASES = 2
MIN_TEST_CASES = 2


def check_splits(cfg: RunConfig, splits) -> None:
    """An XbenchError naming the split counts and what is missing when ``splits`` (after skipped cases) cannot
    train or cannot be evaluated."""
    missing = [
        f"{need} {split} cases to {what}"
        for split, need, what in (("train", MIN_TRAIN_CASES, "train"), ("test", MIN_TEST_CASES, "evaluate"))
        if len(splits[split]) < need
    ]
    if missing:
        counts = ", ".join(f"{len(splits[s])} {s}" for s in ("train", "val", "test"))
        skipped = f" ({len(splits.skipped)} cases skipped: `xbench data info {cfg.dataset}` lists them)"
        raise XbenchError(
            f"{cfg.dataset} has {counts} cases{skipped if splits.skipped else ''}; a run needs at least "
            + " and ".join(missing)
        )


def sample_spread(fake: np.ndarray, real: np.ndarray) -> dict:
    """Per view, how much images vary across test cases: the per-pixel standard deviation across cases,
    averaged over pixels, in 8-bit grey levels, for the samples (``fake``) and the real test images.

    A method that ignores the report draws (nearly) one image for every case: its value is near 0 while
    the real images' is tens of levels. ``fake``, ``real``: uint8 [N, 2, H, W] in the same case order.
    """
    if fake.shape != real.shape or fake.ndim != 4 or fake.shape[1] != 2:
        raise ValueError(f"sample_spread: need two [N, 2, H, W] arrays, got {fake.shape} and {real.shape}")
    return {
        view: {
            "fake_std": float(fake[:, v].astype(np.float64).std(axis=0).mean()),
            "real_std": float(real[:, v].astype(np.float64).std(axis=0).mean()),
        }
        for v, view in enumerate(("frontal", "lateral"))
    }


def evaluate_samples(cfg: RunConfig, dataset, test, fake: np.ndarray, evidence: dict | None = None) -> dict:
    """The metrics block of a run: generated uint8 ``fake`` [N, 2, H, W] against the test split's real images
    ``test`` (the dataset's ``Pairs``, in the same case order), with the frozen judges; ``evidence`` (a dict) is
    filled with the per-case values and replicates behind it. ``xbench check`` calls it on a record's stored
    samples, so the run and the check evaluate the same way."""
    ids = tuple(c.case_id for c in test.cases)
    return evaluate(
        ImageSet(ids, fake),
        ImageSet(ids, test.pixels, tuple(dataset.finding_labels(c) for c in test.cases)),
        cfg.eval,
        dataset=cfg.dataset,
        reference=judge_reference(cfg) if any(get_metric(m).needs_reference for m in cfg.eval.metrics) else None,
        evidence=evidence,
    )


def judge_reference(cfg: RunConfig):
    """The real train + val images of the dataset at the run's resolution, with finding labels, uncapped."""

    dataset = get_dataset(cfg.dataset, dataclasses.replace(cfg.data, max_cases=None, max_eval_cases=None))
    splits = dataset.splits()
    pairs = [dataset.images(splits.train)] + ([dataset.images(splits.val)] if splits.val else [])
    cases = [c for p in pairs for c in p.cases]
    return ImageSet(
        tuple(c.case_id for c in cases),
        np.concatenate([p.pixels for p in pairs]),
        tuple(dataset.finding_labels(c) for c in cases),
    )


def record_result(result: RunResult, run_dir: Path) -> Path:
    """Copy a result under ``leaderboards/records/<dataset>/``, where ``xbench table`` and ``check`` read it,
    with its evidence (``<record>.evidence.npz``: what the leaderboard's verdicts are computed from). A tiny
    record keeps its generated samples beside it too (``<record>.samples.npz``, about 0.3 MB): ``xbench
    check`` re-evaluates them to test the metric layer on fixed inputs, on any machine."""
    target = leaderboard.LEADERBOARDS / "records" / result.dataset / f"{record_name(result)}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "evidence.npz", evidence_path(target))
    if result.setting == "tiny":
        shutil.copyfile(run_dir / "samples.npz", samples_path(target))
    shutil.copyfile(run_dir / "result.json", target)
    return target


def samples_path(record: Path) -> Path:
    """Where a record's generated samples are kept: ``<record>.samples.npz`` beside ``<record>.json``."""
    return record.with_suffix(".samples.npz")


def save_samples(path: Path, case_ids: Sequence[str], pixels: np.ndarray) -> None:
    """The generated test split in one compressed file: ``case_ids`` and uint8 ``pixels`` [N, 2, H, W]."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, case_ids=np.asarray(case_ids), pixels=pixels)
    atomic_write(path, buffer.getvalue())


def load_samples(path: Path) -> tuple[tuple[str, ...], np.ndarray]:
    """(case ids, uint8 [N, 2, H, W]) written by ``save_samples``; a missing or corrupt file is an XbenchError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            ids, pixels = tuple(str(i) for i in data["case_ids"]), data["pixels"]
    except FileNotFoundError:
        raise XbenchError(f"no samples file {path}; re-record the run with `xbench run ... --record`") from None
    except (OSError, ValueError, KeyError) as err:
        raise XbenchError(f"corrupt samples file {path} ({err}); re-record the run") from None
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1] != 2 or len(ids) != len(pixels):
        raise XbenchError(
            f"corrupt samples file {path}: need {len(ids)} uint8 [N, 2, H, W] pairs, got "
            f"{pixels.dtype} {pixels.shape}; re-record the run"
        )
    return ids, pixels


def write_samples(samples_dir: Path, cases: Sequence[Case], pixels: np.ndarray) -> None:
    """``samples/{frontal,lateral}/<case_id>.png``, 8-bit grayscale, each written atomically."""
    for case, (frontal, lateral) in zip(cases, pixels):
        save_png(frontal, samples_dir / "frontal" / f"{case.case_id}.png")
        save_png(lateral, samples_dir / "lateral" / f"{case.case_id}.png")


def _prepare_run_dir(cfg: RunConfig, runs_dir: Path, resume: Path | None) -> Path:
    if resume is not None:
        saved = resume / "config.json"
        if not saved.is_file():
            raise XbenchError(f"--resume {resume}: no config.json there; is it a run directory?")
        if json.loads(saved.read_text()) != json.loads(json.dumps(cfg.to_dict(), default=list)):
            raise XbenchError(
                f"--resume {resume}: its config.json differs from this run's configuration; "
                "resume with the same --method/--dataset/--config/--set"
            )
        return resume
    run_dir = runs_dir / cfg.run_id
    if run_dir.exists():  # the same configuration again: start over (runs are deterministic for a seed)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    _write_json(run_dir / "config.json", cfg.to_dict())
    return run_dir


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True, default=list) + "\n")
