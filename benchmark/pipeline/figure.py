"""The paper's Figure 4 for our runs: for some test reports, the ground truth and every recorded method."""

from pathlib import Path

import numpy as np

from benchmark.core.errors import XbenchError
from benchmark.core.sheets import contact_sheet, save_sheet
from benchmark.data.datasets import get_dataset
from benchmark.data.images import read_gray
from benchmark.pipeline.config import config_from_dict
from benchmark.pipeline.leaderboard import TABLE1_BLOCKS, load_records


def comparison_figure(dataset: str, setting: str, n_cases: int, out: Path, *, runs_dir: Path) -> Path:
    """Rows: test reports (their impression beside); columns, named once above: the ground truth F | L, then
    each (method, variant) of every Table 1 block recorded at ``setting`` (seed 0), F | L (its run's samples/),
    at 128 px or larger."""
    if n_cases < 1:
        raise XbenchError(f"--cases must be at least 1, not {n_cases}")
    members = {key for _, block in TABLE1_BLOCKS for key in block}
    records = [
        r for r in load_records(dataset) if r.setting == setting and (r.method, r.variant) in members and r.seed == 0
    ]
    records = [r for r in records if r.method != "dummy"] or records  # the floor (one mean image) only if alone
    if not records:
        raise XbenchError(
            f"no {setting} records of {dataset}; record runs with `xbench run --config {setting} --record` first"
        )
    runs = []
    for record in sorted(records, key=lambda r: (r.method != "xraygan", r.method, r.variant)):
        samples = runs_dir / record.run_id / "samples"
        if not samples.is_dir():
            raise XbenchError(f"samples of {record.run_id} not found under {runs_dir}; re-run it or pass --runs-dir")
        runs.append((record, samples))
    ds = get_dataset(dataset, config_from_dict(runs[0][0].config).data)
    cases = ds.splits().test[:n_cases]
    truth = ds.images(cases)
    rows = []
    for case, (frontal, lateral) in zip(truth.cases, truth.pixels):
        images = [frontal, lateral]
        for _, samples in runs:
            images += [
                _sample(samples / view / f"{case.case_id}.png", frontal.shape) for view in ("frontal", "lateral")
            ]
        rows.append((images, f"case {case.case_id}\nIMPRESSION: {case.report.impression}"))
    header = [("ground truth (F, L)", 2)] + [(f"{r.method} [{r.variant}] (F, L)", 2) for r, _ in runs]
    return save_sheet(contact_sheet(rows, text_width_px=360, header=header, min_tile=128), out)


def _sample(path: Path, shape) -> np.ndarray:
    image = read_gray(path)
    if image.shape != shape:
        raise XbenchError(f"{path} is {image.shape[0]}px, the ground truth {shape[0]}px; runs differ in image size")
    return image
