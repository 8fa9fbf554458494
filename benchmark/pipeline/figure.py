"""Figures from the records: the paper's Figure 4 for our runs (for some test reports, the ground truth and every
recorded method), and the samples nearest a training film (memorisation)."""

from pathlib import Path

import numpy as np

from benchmark.core.errors import XbenchError
from benchmark.core.sheets import contact_sheet, save_sheet
from benchmark.data.datasets import get_dataset
from benchmark.data.images import read_gray
from benchmark.pipeline import leaderboard
from benchmark.pipeline.config import config_from_dict
from benchmark.pipeline.leaderboard import TABLE1_BLOCKS, load_records
from benchmark.pipeline.results import evidence_path, load_evidence, load_result, record_name
from benchmark.pipeline.runner import load_samples, samples_path
from methods import get_method


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
    records = [r for r in records if get_method(r.method).trains] or records  # the floors (a mean image, retrieved
    # training films) only if alone
    if not records:
        raise XbenchError(
            f"no {setting} records of {dataset}; record runs with `xbench run --config {setting} --record` first"
        )
    runs = [
        (record, _samples_of(record, runs_dir))
        for record in sorted(records, key=lambda r: (r.method != "xraygan", r.method, r.variant))
    ]
    ds = get_dataset(dataset, config_from_dict(runs[0][0].config).data)
    cases = ds.splits().test[:n_cases]
    truth = ds.images(cases)
    rows = []
    for case, (frontal, lateral) in zip(truth.cases, truth.pixels):
        images = [frontal, lateral]
        for _, sample in runs:
            images += [sample(case.case_id, v, frontal.shape) for v in range(2)]
        rows.append((images, f"case {case.case_id}\nIMPRESSION: {case.report.impression}"))
    header = [("ground truth (F, L)", 2)] + [(f"{r.method} [{r.variant}] (F, L)", 2) for r, _ in runs]
    return save_sheet(contact_sheet(rows, text_width_px=360, header=header, min_tile=128), out)


def _samples_of(record, runs_dir: Path):
    """(case id, view index, shape) -> uint8 image of ``record``'s samples: those kept beside the committed record
    (``<record>.samples.npz``: the tiny records), else its run's ``samples/`` PNGs under ``runs_dir``."""
    kept = samples_path(leaderboard.LEADERBOARDS / "records" / record.dataset / f"{record_name(record)}.json")
    if kept.is_file():
        ids, pixels = load_samples(kept)
        row = {case_id: i for i, case_id in enumerate(ids)}
        return lambda case_id, view, shape: _checked(pixels[row[case_id], view], shape, kept)
    folder = runs_dir / record.run_id / "samples"
    if not folder.is_dir():
        raise XbenchError(f"samples of {record.run_id} not found under {runs_dir}; re-run it or pass --runs-dir")
    views = ("frontal", "lateral")
    return lambda case_id, view, shape: _checked(
        read_gray(folder / views[view] / f"{case_id}.png"), shape, folder / views[view] / f"{case_id}.png"
    )


def _checked(image: np.ndarray, shape, path: Path) -> np.ndarray:
    if image.shape != shape:
        raise XbenchError(f"{path} is {image.shape[0]}px, the ground truth {shape[0]}px; runs differ in image size")
    return image


def closest_copies_figure(record_path: Path, n_pairs: int, out: Path) -> Path:
    """Memorisation at a glance: per view, the ``n_pairs`` samples of a record nearest a training film (in the
    chest-film features of ``copy_rate``), each beside that film, with its distance and the copy threshold. Read
    from the record's samples and evidence (a tiny record keeps both; a small one its evidence only)."""
    if n_pairs < 1:
        raise XbenchError(f"--cases must be at least 1, not {n_pairs}")
    record = load_result(record_path)
    ids, samples = load_samples(samples_path(record_path))
    evidence = load_evidence(evidence_path(record_path))
    if "copy_rate_distance/frontal" not in evidence:
        raise XbenchError(f"{record_path} has no memorisation evidence; re-evaluate it (scripts/reevaluate_records.py)")
    ds = get_dataset(record.dataset, config_from_dict(record.config).data)
    training = {c.case_id: c for c in ds.splits().all}
    rows = []
    for v, view in enumerate(("frontal", "lateral")):
        distance = evidence[f"copy_rate_distance/{view}"]
        neighbour = evidence[f"copy_rate_neighbour/{view}"]
        threshold = float(evidence[f"copy_rate_threshold/{view}"])
        for i in np.argsort(distance, kind="stable")[:n_pairs]:
            film = ds.images([training[str(neighbour[i])]]).pixels[0, v]
            verdict = "copy" if distance[i] < threshold else "not a copy"
            text = f"{view}: sample of case {ids[i]} | training case {neighbour[i]}\n"
            rows.append(
                ([samples[i, v], film], text + f"distance {distance[i]:.3g}, threshold {threshold:.3g}: {verdict}")
            )
    header = [("generated | nearest training film", 2)]
    return save_sheet(contact_sheet(rows, text_width_px=360, header=header, min_tile=128), out)
