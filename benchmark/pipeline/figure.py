"""The paper's Figure 4 for our runs: for some test reports, the ground truth and every recorded method."""

from pathlib import Path

import numpy as np

from benchmark.core.errors import XbenchError
from benchmark.core.sheets import contact_sheet, save_sheet
from benchmark.data.datasets import get_dataset
from benchmark.data.images import read_gray
from benchmark.pipeline.config import config_from_dict
from benchmark.pipeline.leaderboard import load_records


def comparison_figure(dataset: str, n_cases: int, out: Path, *, runs_dir: Path) -> Path:
    """Rows: test reports; columns: ground truth F | L, then each recorded run's F | L (its samples/)."""
    if n_cases < 1:
        raise XbenchError(f"--cases must be at least 1, not {n_cases}")
    records = [r for r in load_records(dataset) if r.variant in ("default", "full", "faithful")]
    if not records:
        raise XbenchError(f"no recorded results for {dataset}; record runs with `xbench run --record` first")
    runs = []
    for record in records:
        samples = runs_dir / record.run_id / "samples"
        if not samples.is_dir():
            raise XbenchError(f"samples of {record.run_id} not found under {runs_dir}; re-run it or pass --runs-dir")
        runs.append((record, samples))
    ds = get_dataset(dataset, config_from_dict(records[0].config).data)
    cases = ds.splits().test[:n_cases]
    truth = ds.images(cases)
    legend = "pairs (F, L): truth, " + ", ".join(r.method for r, _ in runs)
    rows = []
    for case, (frontal, lateral) in zip(truth.cases, truth.pixels):
        images = [frontal, lateral]
        for _, samples in runs:
            images += [
                _sample(samples / view / f"{case.case_id}.png", frontal.shape) for view in ("frontal", "lateral")
            ]
        text = f"{legend}\ncase {case.case_id}: {case.report.findings} IMPRESSION: {case.report.impression}"
        rows.append((images, text))
    return save_sheet(contact_sheet(rows, text_width_px=360), out)


def _sample(path: Path, shape) -> np.ndarray:
    image = read_gray(path)
    if image.shape != shape:
        raise XbenchError(f"{path} is {image.shape[0]}px, the ground truth {shape[0]}px; runs differ in image size")
    return image
