"""Training throughput per method, mode and phase: warm-up steps, then the median of timed steps.

Inputs are synthetic (random reports and images already on the device), so the figure is the training
step itself: critic and generator updates, text encoder included, exactly the ``train_step`` that ``fit``
runs. Each phase's projected wall time is its epochs x steps per epoch (over the Open-i train split) x the
median step; XRayGAN's per-stage VCN training and AttnGAN's DAMSM pretraining are timed the same way.
FLOPs per pair are counted on one extra step (every matmul and convolution, backward and the penalty's
double backward included), so the achieved TFLOP/s shows how far a step is from the hardware's limit.

Modes are the speed switches that are config values, so one run measures each against the others:
``fp32`` (TF32 convolutions on CUDA, PyTorch's default), ``bf16`` (autocast, on the CPU too), ``nchw`` (bf16
without channels_last) and ``compile`` (bf16 + torch.compile; its compile time is the first step's, reported apart).
"""

import dataclasses
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from benchmark.core.errors import XbenchError
from benchmark.core.resize import resident_images
from benchmark.data.text import Tokens, Vocab
from benchmark.pipeline.config import load_config
from methods import get_method
from methods.base import PairedData
from methods.damsm import DAMSM, pretrain_damsm
from methods.training import Phase, prepare_device
from methods.vcn import train_vcn

# Open-i train split: 1,557 words + 3 specials, 13 sentences of up to 34 words, 180 tokens flat; 1,809 pairs.
OPENI_VOCAB = (1560, 13, 34, 180)
OPENI_TRAIN_CASES = 1809

BF16 = {"bf16": True, "cpu_bf16": True}  # bf16 autocast on either device
MODES = {  # name -> config changes
    "fp32": {"bf16": False, "cpu_bf16": False},
    "bf16": BF16,
    "nchw": BF16 | {"channels_last": False},
    "compile": BF16 | {"compile": True},
}


def synthetic_data(n: int, size: int, vocab: Vocab, seed: int = 0) -> PairedData:
    """Random reports of realistic lengths and random uint8 image pairs (a step's cost ignores content)."""
    rng = np.random.default_rng(seed)
    s, w, t = vocab.max_sentences, vocab.max_words, vocab.max_tokens
    lengths = rng.integers(3, w + 1, (n, 2, s))
    findings = np.where(np.arange(w) < lengths[:, 0, :, None], rng.integers(3, len(vocab), (n, s, w)), 0)
    impression = np.where(np.arange(w) < lengths[:, 1, :, None] // 3, rng.integers(3, len(vocab), (n, s, w)), 0)
    flat = np.where(np.arange(t) < rng.integers(20, t, (n, 1)), rng.integers(3, len(vocab), (n, t)), 0)
    pixels = rng.integers(0, 256, (n, 2, size, size), dtype=np.uint8)
    return PairedData(tuple(str(i) for i in range(n)), Tokens(findings, impression, flat), pixels)


def openi_vocab() -> Vocab:
    v, s, w, t = OPENI_VOCAB
    return Vocab(("<pad>", "<unk>", "<sep>") + tuple(f"w{i}" for i in range(v - 3)), s, w, t)


def method_config(method: str, setting: str, mode: str):
    """The method's config at ``setting`` (resolved as ``xbench run`` does) with the mode's switches applied."""
    cls = get_method(method)
    cfg = load_config(method, "phantom", setting=setting).model
    fields = {f.name for f in dataclasses.fields(cfg)}
    missing = missing_options(method, mode)
    if missing:
        raise XbenchError(f"bench mode {mode!r} needs the config option(s) {missing}, which {method} lacks")
    changes = dict(MODES[mode], progress=False)
    for pretrained in ("vcn", "damsm"):  # begin_stage trains these; one epoch suffices before timing steps
        if pretrained in fields:
            changes[pretrained] = dataclasses.replace(getattr(cfg, pretrained), epochs=1)
    return cls, cfg, dataclasses.replace(cfg, **changes)


def missing_options(method: str, mode: str) -> list[str]:
    """The config options the bench ``mode`` sets that ``method``'s Config lacks (its speed switches)."""
    if mode not in MODES:
        raise XbenchError(f"unknown bench mode {mode!r}; choose from: {', '.join(MODES)}")
    fields = {f.name for f in dataclasses.fields(get_method(method).Config)}
    return sorted(set(MODES[mode]) - fields)


class FlopCount(TorchDispatchMode):
    """Counts the FLOPs of every op PyTorch's flop registry knows (matmuls, convolutions, their backwards)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call takes on the device: CUDA events around it, else the wall clock."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(fn: Callable[[], object], device: torch.device, warmup: int, steps: int, count_flops: bool) -> dict:
    """First call (cuDNN autotuning, compilation), the median of ``steps`` after ``warmup``, one counted call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    first = timed(fn, device)
    for _ in range(max(warmup - 1, 0)):
        fn()
    median = statistics.median(timed(fn, device) for _ in range(steps))
    flops = None
    if count_flops:
        with FlopCount() as counter:
            fn()
        flops = counter.total
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"first_s": first, "median_s": median, "flops": flops, "peak_gib": peak}


def _row(method: str, mode: str, phase: Phase, train_cases: int, m: dict, device: torch.device) -> dict:
    batch, epochs = phase.batch_size, phase.epochs
    steps_per_epoch = math.ceil(train_cases / batch)
    gflop = None if m["flops"] is None else m["flops"] / batch / 1e9
    pairs_per_s = batch / m["median_s"]
    return {
        "method": method,
        "mode": mode,
        "precision": "bf16" if MODES[mode]["bf16"] else "fp32",
        "stage": phase.stage,
        "phase": phase.name,
        "batch": batch,
        "epochs": epochs,
        "ms_per_step": 1000 * m["median_s"],
        "pairs_per_s": pairs_per_s,
        "gflop_per_pair": gflop,
        "tflops": None if gflop is None else gflop * pairs_per_s / 1000,
        "peak_gib": m["peak_gib"],
        "first_step_s": m["first_s"],  # includes cuDNN autotuning and, in compile mode, compilation
        "projected_s": epochs * steps_per_epoch * m["median_s"],
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }


def phase_rows(
    method: str,
    setting: str = "tiny",
    mode: str = "fp32",
    *,
    device: str | torch.device | None = None,
    warmup: int = 5,
    steps: int = 20,
    train_cases: int = OPENI_TRAIN_CASES,
) -> Iterator[dict]:
    """One row per phase of the method's schedule, and of what ``begin_stage`` pretrains (XRayGAN's VCN at each
    stage, AttnGAN's DAMSM once), each yielded as soon as it is timed: a bench cut part-way keeps the phases
    before."""
    cls, full_cfg, cfg = method_config(method, setting, mode)
    vocab = openi_vocab()
    with tempfile.TemporaryDirectory() as tmp:
        m = cls(cfg, vocab, image_size=_image_size(cfg, setting), device=device)
        prepare_device(m.device)
        count = mode != "compile"  # FLOPs do not depend on the mode; the dispatch mode would break tracing
        if method == "attngan" and cfg.text_training == "damsm":
            yield _damsm_row(m, full_cfg, mode, train_cases, warmup, steps, count)
        for phase, step in m.training_steps(lambda batch: synthetic_data(2 * batch, m.image_size, vocab), Path(tmp)):
            if method == "xraygan" and phase.name != "warmup" and cfg.vc_weight > 0:
                yield _vcn_row(m, full_cfg, mode, phase.stage, train_cases, warmup, steps, count)
            result = measure(step, m.device, warmup, steps, count)
            yield _row(method, mode, phase, train_cases, result, m.device)


def _image_size(cfg, setting: str) -> int:
    sizes = getattr(cfg, "stage_sizes", None)
    return sizes[-1] if sizes else (256 if setting == "paper" else 64)


def _vcn_row(m, full_cfg, mode, stage, train_cases, warmup, steps, count) -> dict:
    """One VCN training step (Adam on a batch of true and mismatched real pairs) at the stage's size."""
    vcn_cfg = dataclasses.replace(full_cfg.vcn, epochs=1)
    size = m.cfg.stage_sizes[stage]
    pixels = synthetic_data(PRETRAINING_STEPS_PER_CALL * vcn_cfg.batch_size, size, openi_vocab()).pixels

    def train():
        train_vcn(pixels, size, vcn_cfg, seed=0, device=m.device, precision=m.cfg)

    result = measure_in_calls(train, m.device, warmup, steps, count)
    phase = Phase(stage, "vcn", full_cfg.vcn.epochs, vcn_cfg.batch_size)
    return _row("xraygan", mode, phase, train_cases, result, m.device)


def _damsm_row(m, full_cfg, mode, train_cases, warmup, steps, count) -> dict:
    """One DAMSM pretraining step (text encoder + both views' image encoders) at the final size."""
    damsm_cfg = dataclasses.replace(full_cfg.damsm, epochs=1)
    data = synthetic_data(PRETRAINING_STEPS_PER_CALL * damsm_cfg.batch_size, m.image_size, openi_vocab())
    images = resident_images(data.pixels, m.image_size, m.device)
    damsm = DAMSM(damsm_cfg, m.nets.encoder.word_dim, m.cfg.text.out_dim).to(m.device)

    def step():
        pretrain_damsm(m.nets.encoder, damsm, data.tokens, images, damsm_cfg, seed=0, precision=m.cfg)

    result = measure_in_calls(step, m.device, warmup, steps, count)
    phase = Phase("damsm", "damsm", full_cfg.damsm.epochs, damsm_cfg.batch_size)
    return _row("attngan", mode, phase, train_cases, result, m.device)


# A pretraining (VCN, DAMSM) is timed by calls of this many steps (one epoch over that many batches), so the
# construction of its network and optimiser is amortised.
PRETRAINING_STEPS_PER_CALL = 4


def measure_in_calls(call: Callable[[], object], device, warmup: int, steps: int, count: bool) -> dict:
    """``measure`` in calls of ``PRETRAINING_STEPS_PER_CALL`` steps: at least ``warmup`` and ``steps`` steps,
    in whole calls; times and flops per step."""
    per_call = PRETRAINING_STEPS_PER_CALL
    result = measure(call, device, math.ceil(warmup / per_call), math.ceil(steps / per_call), count)
    return result | {
        "median_s": result["median_s"] / per_call,
        "flops": None if result["flops"] is None else result["flops"] / per_call,
    }


def schedule_totals(rows: list[dict]) -> list[dict]:
    """Projected wall time of each method's full schedule per mode (training only; evaluation apart)."""
    totals: dict[tuple[str, str], float] = {}
    for r in rows:
        key = (r["method"], r["mode"])
        totals[key] = totals.get(key, 0.0) + r["projected_s"]
    return [{"method": k[0], "mode": k[1], "projected_s": v} for k, v in totals.items()]
