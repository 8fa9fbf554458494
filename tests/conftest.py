"""Shared fixtures: a private cache folder, and small Open-i / MIMIC trees in the real layouts."""

import csv
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.data.datasets.base import read_protocol
from benchmark.data.reports import iter_report_files, shipped_reports_archive

SHARED_SPLITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "xraygan-splits"


def pytest_configure(config):
    """Under ``pytest -n N`` (the README's command) each worker gets its share of the cores: N workers each
    running torch's default of every core would oversubscribe them, and OpenMP threads waiting on a descheduled
    peer spin. Subprocesses a test starts inherit the share through OMP_NUM_THREADS."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture
def xbench():
    """The command line, in process: ``xbench(*args)`` -> click's Result (exit_code, output)."""
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache folder, so no test reads another's (or the user's) cache."""
    monkeypatch.setenv("XBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def write_png(path: Path, seed: int, shape=(96, 80)) -> None:
    """A small 8-bit grayscale image that differs per seed."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)


def first_rows(protocol: str, per_split: int):
    """The first ``per_split`` protocol rows of each split."""
    rows, seen = [], {}
    for row in read_protocol(protocol):
        if seen.get(row.split, 0) < per_split:
            seen[row.split] = seen.get(row.split, 0) + 1
            rows.append(row)
    return rows


@pytest.fixture
def openi_tree(tmp_path):
    """An NLMCXR_png folder with both images of the first 2 cases of each split."""
    folder = tmp_path / "openi" / "NLMCXR_png"
    for i, row in enumerate(first_rows("openi.csv.gz", 2)):
        write_png(folder / f"{row.frontal}.png", 2 * i)
        write_png(folder / f"{row.lateral}.png", 2 * i + 1)
    return tmp_path / "openi"


@pytest.fixture
def report_folder(tmp_path):
    """The shipped XMLs of the first 2 cases of each split, as a folder the test may break."""
    wanted = {f"{row.case_id}.xml" for row in first_rows("openi.csv.gz", 2)}
    folder = tmp_path / "reports"
    folder.mkdir()
    for name, data in iter_report_files(shipped_reports_archive()):
        if Path(name).name in wanted:
            (folder / Path(name).name).write_bytes(data)
    return folder


MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  Cough.

 FINDINGS:
 The lungs are clear.  There is no pleural effusion
 or pneumothorax.  Heart size is normal.

 IMPRESSION:
 No acute cardiopulmonary process.
"""


@pytest.fixture
def mimic_tree(tmp_path):
    """A mimic-cxr-jpg/2.0.0 tree (JPGs, metadata CSV) plus mimic-cxr report texts, first 2 cases per split."""
    root = tmp_path / "mimic-cxr-jpg" / "2.0.0"
    meta = [("dicom_id", "subject_id", "study_id", "ViewPosition")]
    for i, row in enumerate(first_rows("mimic_p10.csv.gz", 2)):
        study = root / "files" / f"p{row.subject_id[:2]}" / f"p{row.subject_id}" / f"s{row.case_id}"
        for j, (dicom, view) in enumerate(((row.frontal, "PA"), (row.lateral, "LATERAL"))):
            study.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(10 * i + j)
            Image.fromarray(rng.integers(0, 256, (90, 70), dtype=np.uint8)).save(study / f"{dicom}.jpg")
            meta.append((dicom, row.subject_id, row.case_id, view))
        (study.parent / f"s{row.case_id}.txt").write_text(MIMIC_REPORT)
    with gzip.open(root / "mimic-cxr-2.0.0-metadata.csv.gz", "wt", newline="") as f:
        csv.writer(f).writerows(meta)
    return root


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory):
    """Phantom at 64 px: 512 train and 64 test cases, vocabulary from the train split (built once)."""
    from benchmark.data.datasets import DataConfig, get_dataset
    from benchmark.data.text import Vocab
    from methods.base import PairedData

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("phantom-cache")))
        ds = get_dataset("phantom", DataConfig(image_size=64, max_cases=512))
        splits = ds.splits()
        vocab = Vocab.build((c.report.findings, c.report.impression) for c in splits.train)
        train = PairedData.of(ds.images(splits.train), vocab)
        test = PairedData.of(ds.images(splits.test[:64]), vocab)
    return vocab, train, test


@pytest.fixture
def tiny_inception(monkeypatch):
    """A small stand-in for the Inception network (the real one takes ~25 s on 2 cores for a few dozen images);
    the feature and distance code around it is the same."""
    from metrics import fidelity
    from tests.metrics_fixtures import tiny_inception_extractor

    monkeypatch.setattr(fidelity, "inception_extractor", tiny_inception_extractor)


@pytest.fixture
def quick_judges(monkeypatch):
    """Judges trained for 1 epoch (the protocol's recipe otherwise): the plumbing, not their quality. With few
    reference cases and an untrained judge, every finding with a few positives is kept."""
    from metrics import findings, view_consistency

    monkeypatch.setattr(view_consistency, "EPOCHS", 1)
    monkeypatch.setattr(findings, "EPOCHS", 1)
    monkeypatch.setattr(findings, "SELECT_AUROC", 0.0)
    monkeypatch.setattr(findings, "MIN_REFERENCE_POSITIVES", 5)
    monkeypatch.setattr(findings, "MIN_HOLDOUT_POSITIVES", 1)
