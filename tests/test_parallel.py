"""Per-case work over worker processes: the same results in the same order, from more than one process."""

import os

import numpy as np

from benchmark.core import parallel
from benchmark.data.datasets import DataConfig, get_dataset


def _square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_parallel_map_keeps_order_and_uses_workers():
    out = list(parallel.parallel_map(_square_and_pid, range(256), workers=2))
    assert [v for v, _ in out] == [x * x for x in range(256)]
    assert os.getpid() not in {pid for _, pid in out}  # the work ran in the pool's workers, not here


def test_parallel_map_stays_serial_below_the_threshold():
    out = list(parallel.parallel_map(_square_and_pid, range(parallel.MIN_ITEMS_PER_WORKER), workers=2))
    assert {pid for _, pid in out} == {os.getpid()}


def test_phantom_renders_the_same_bytes_with_two_workers(monkeypatch):
    dataset = get_dataset("phantom", DataConfig(image_size=32))
    cases = dataset.splits().test[:128]
    monkeypatch.setattr(parallel, "cpu_workers", lambda: 1)
    serial = dataset._preprocess(cases, dataset.cfg.pipeline)["pixels"]
    monkeypatch.setattr(parallel, "cpu_workers", lambda: 2)
    pooled = dataset._preprocess(cases, dataset.cfg.pipeline)["pixels"]
    assert serial.shape == (128, 2, 32, 32) and np.array_equal(serial, pooled)
