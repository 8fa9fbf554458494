"""The on-disk cache computes an entry once, however many processes ask for it at the same time."""

import multiprocessing
import time
from pathlib import Path

import numpy as np

from benchmark.core import cache


def _compute_slowly(log: Path) -> dict[str, np.ndarray]:
    with open(log, "a") as f:
        f.write("computed\n")
    time.sleep(1.0)  # long enough that the other process asks while this one computes
    return {"x": np.arange(3)}


def _ask(root: str, log: str) -> list[int]:
    import os

    os.environ["XBENCH_CACHE_DIR"] = root
    return cache.load_or_compute("features", "k", lambda: _compute_slowly(Path(log))).get("x").tolist()


def test_two_processes_asking_for_one_entry_compute_it_once(tmp_path):
    log = tmp_path / "log"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        got = pool.starmap(_ask, [(str(tmp_path / "cache"), str(log))] * 2)
    assert got == [[0, 1, 2], [0, 1, 2]]
    assert log.read_text().splitlines() == ["computed"]


def test_a_hit_is_read_without_computing(tmp_path, monkeypatch):
    monkeypatch.setenv("XBENCH_CACHE_DIR", str(tmp_path))
    cache.save("features", "k", {"x": np.ones(2)})
    assert cache.load_or_compute("features", "k", lambda: 1 / 0)["x"].tolist() == [1.0, 1.0]
