"""Training throughput per method and stage: warm-up steps, then the median of timed steps.

Inputs are synthetic (random reports and images already on the device), so the figure is the training
step itself: critic and generator updates, text encoder included, as the methods run them in ``fit``.
On the CPU it runs at the tiny setting so tests exercise it; figures from a GPU name the device.
"""

import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.text import Vocab
from methods import get_method
from methods.base import PairedData

# Open-i train split sizes: 1,557 words + 3 specials, 13 sentences of up to 34 words, 180 tokens flat.
OPENI_VOCAB = (1560, 13, 34, 180)


def synthetic_data(n: int, size: int, vocab: Vocab, seed: int = 0) -> PairedData:
    rng = np.random.default_rng(seed)
    s, w, t = vocab.max_sentences, vocab.max_words, vocab.max_tokens
    lengths = rng.integers(3, w + 1, (n, 2, s))
    findings = np.where(np.arange(w) < lengths[:, 0, :, None], rng.integers(3, len(vocab), (n, s, w)), 0)
    impression = np.where(np.arange(w) < lengths[:, 1, :, None] // 3, rng.integers(3, len(vocab), (n, s, w)), 0)
    flat = np.where(np.arange(t) < rng.integers(20, t, (n, 1)), rng.integers(3, len(vocab), (n, t)), 0)
    from benchmark.text import Tokens

    pixels = rng.integers(0, 256, (n, 2, size, size), dtype=np.uint8)
    return PairedData(tuple(str(i) for i in range(n)), Tokens(findings, impression, flat), pixels)


def time_stages(method: str, cfg, *, image_size: int, warmup: int = 5, steps: int = 20, device=None) -> list[dict]:
    """One row per (stage, phase) of the method's schedule: ms per step, pairs/s, peak GPU memory."""
    v, s, w, t = OPENI_VOCAB
    vocab = Vocab(("<pad>", "<unk>", "<sep>") + tuple(f"w{i}" for i in range(v - 3)), s, w, t)
    cls = get_method(method)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        m = cls(cfg, vocab, image_size=image_size, device=device)
        phases = [p for p in m.phases() if p.epochs > 0 and p.name != "warmup"]
        for phase in phases:
            data = synthetic_data(2 * phase.batch_size, image_size, vocab)
            stage = m.begin_stage(phase.stage, data, Path(tmp))
            index = torch.arange(phase.batch_size, device=m.device)
            times = []
            cuda = m.device.type == "cuda"
            if cuda:
                torch.cuda.reset_peak_memory_stats(m.device)
            for i in range(warmup + steps):
                if cuda:
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    stage.step(phase, index)
                    end.record()
                    end.synchronize()
                    elapsed = start.elapsed_time(end) / 1000
                else:
                    t0 = time.perf_counter()
                    stage.step(phase, index)
                    elapsed = time.perf_counter() - t0
                if i >= warmup:
                    times.append(elapsed)
            median = statistics.median(times)
            rows.append(
                {
                    "method": method,
                    "stage": phase.stage,
                    "phase": phase.name,
                    "batch": phase.batch_size,
                    "ms_per_step": 1000 * median,
                    "pairs_per_s": phase.batch_size / median,
                    "peak_gib": torch.cuda.max_memory_allocated(m.device) / 2**30 if cuda else None,
                    "bf16": bool(getattr(cfg, "bf16", False)) and cuda,
                    "device": torch.cuda.get_device_name(m.device) if cuda else "cpu",
                }
            )
    return rows


def xraygan_rows(setting: str, device=None, steps: int = 20) -> list[dict]:
    """XRayGAN per stage at the paper (or tiny) setting, fp32 and bf16 (bf16 only applies on CUDA)."""
    cls = get_method("xraygan")
    base = cls.Config() if setting == "paper" else cls.Config.tiny()
    base = dataclasses.replace(base, vcn=dataclasses.replace(base.vcn, epochs=1), progress=False)
    rows = []
    for bf16 in (False, True):
        size = base.stage_sizes[-1]
        rows += time_stages(
            "xraygan", dataclasses.replace(base, bf16=bf16), image_size=size, device=device, steps=steps
        )
    return rows
