"""The real-data loaders on fixture trees in the real layouts, the error policy and the image cache."""

import re

import numpy as np
import pytest

from benchmark.core.errors import XbenchError
from benchmark.data.datasets import DATASETS, DataConfig, get_dataset
from benchmark.data.datasets.mimic import report_sections
from tests.conftest import MIMIC_REPORT, first_rows, write_png


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(XbenchError, match="unknown dataset 'nope'; choose one of: mimic, openi, phantom"):
        get_dataset("nope")
    assert set(DATASETS) == {"phantom", "openi", "mimic"}


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"on_error": "ignore"}, "data.on_error"),
        ({"image_size": 100}, "power of two"),
        ({"max_cases": 0}, "max_cases"),
    ],
)
def test_bad_data_config_values(bad, match):
    with pytest.raises(XbenchError, match=match):
        DataConfig(**bad)


def test_openi_loads_a_fixture_tree(openi_tree):
    ds = get_dataset("openi", DataConfig(root=str(openi_tree), image_size=32, max_cases=2))
    splits = ds.splits()
    assert [len(splits[s]) for s in ("train", "val", "test")] == [2, 2, 2]
    assert splits.train[0].case_id == "1" and splits.train[0].frontal == "CXR1_1_IM-0001-4001"
    pairs = ds.images(splits.test)
    assert pairs.pixels.shape == (2, 2, 32, 32) and pairs.pixels.dtype == np.uint8
    assert not np.array_equal(pairs.frontal[0], pairs.lateral[0])
    assert pairs.frontal.max() == 255  # equalised, as the paper's preprocessing


def test_openi_without_root_says_how_to_get_images():
    with pytest.raises(XbenchError, match=r"set data.root=DIR .*xbench data download openi"):
        get_dataset("openi").splits()


def test_missing_image_is_raised_or_skipped(openi_tree):
    row = first_rows("openi.csv.gz", 1)[0]
    (openi_tree / "NLMCXR_png" / f"{row.lateral}.png").unlink()
    with pytest.raises(
        XbenchError, match=re.escape(f"openi case {row.case_id}: missing image") + ".*data.on_error=skip"
    ):
        get_dataset("openi", DataConfig(root=str(openi_tree), max_cases=2)).splits()
    splits = get_dataset("openi", DataConfig(root=str(openi_tree), max_cases=1, on_error="skip")).splits()
    assert list(splits.skipped) == [row.case_id] and splits.train[0].case_id != row.case_id


def test_corrupt_image_is_raised_or_skipped(openi_tree):
    row = first_rows("openi.csv.gz", 1)[0]
    (openi_tree / "NLMCXR_png" / f"{row.frontal}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ds = get_dataset("openi", DataConfig(root=str(openi_tree), image_size=32, max_cases=2))
    with pytest.raises(XbenchError, match=rf"corrupt image .*{row.frontal}\.png"):
        ds.images(ds.splits().train)
    ds = get_dataset("openi", DataConfig(root=str(openi_tree), image_size=32, max_cases=2, on_error="skip"))
    pairs = ds.images(ds.splits().train)
    assert list(pairs.skipped) == [row.case_id] and len(pairs.cases) == len(pairs.pixels) == 1


def test_unresolved_id_and_empty_report(openi_tree, report_folder):
    rows = first_rows("openi.csv.gz", 2)
    (report_folder / f"{rows[0].case_id}.xml").unlink()
    text = (report_folder / f"{rows[1].case_id}.xml").read_text()
    emptied = re.sub(r'(<AbstractText Label="(?:FINDINGS|IMPRESSION)">)[^<]*', r"\1", text)
    (report_folder / f"{rows[1].case_id}.xml").write_text(emptied)
    cfg = dict(root=str(openi_tree), reports=str(report_folder), max_cases=2)
    with pytest.raises(XbenchError, match=f"openi case {rows[0].case_id}: no report with this id"):
        get_dataset("openi", DataConfig(**cfg)).splits()
    splits = get_dataset("openi", DataConfig(**cfg, on_error="skip")).splits()
    assert splits.skipped[rows[0].case_id].endswith("no report with this id; check data.reports")
    assert "neither FINDINGS nor IMPRESSION" in splits.skipped[rows[1].case_id]
    assert len(splits.train) == 0 and len(splits.val) == 2  # the fixture holds images for 2 cases per split


def test_images_are_cached_and_the_key_follows_the_pipeline(openi_tree, monkeypatch):
    ds = get_dataset("openi", DataConfig(root=str(openi_tree), image_size=32, max_cases=2))
    cases = ds.splits().val
    first = ds.images(cases).pixels
    monkeypatch.setattr(type(ds), "_read_pair", lambda self, case: pytest.fail("read again despite the cache"))
    np.testing.assert_array_equal(ds.images(cases).pixels, first)
    other = get_dataset("openi", DataConfig(root=str(openi_tree), image_size=32, max_cases=2, equalize=False))
    with pytest.raises(pytest.fail.Exception):
        other.images(cases)  # another pipeline is another key: a miss


def test_mimic_loads_a_fixture_tree(mimic_tree):
    ds = get_dataset("mimic", DataConfig(root=str(mimic_tree), image_size=32, max_cases=2))
    splits = ds.splits()
    assert [len(splits[s]) for s in ("train", "val", "test")] == [2, 2, 2]
    case = splits.train[0]
    assert (case.case_id, case.subject_id) == ("50414267", "10000032")
    assert case.report.impression == "No acute cardiopulmonary process."
    assert case.report.findings.startswith("The lungs are clear. There is no pleural effusion or pneumothorax.")
    assert ds.images(splits.test).pixels.shape == (2, 2, 32, 32)


def test_mimic_checks_view_positions(mimic_tree):
    import gzip

    meta = mimic_tree / "mimic-cxr-2.0.0-metadata.csv.gz"
    text = gzip.open(meta, "rt").read().replace("LATERAL", "AP", 1)
    with gzip.open(meta, "wt") as f:
        f.write(text)
    with pytest.raises(XbenchError, match=r"has ViewPosition 'AP' in the metadata, expected LATERAL"):
        get_dataset("mimic", DataConfig(root=str(mimic_tree), max_cases=2)).splits()


def test_mimic_report_sections():
    sections = report_sections(MIMIC_REPORT)
    assert sections["EXAMINATION"] == "CHEST (PA AND LAT)" and sections["INDICATION"] == "Cough."
    assert sections["IMPRESSION"] == "No acute cardiopulmonary process."


def test_mimic_without_root_or_metadata(tmp_path):
    with pytest.raises(XbenchError, match="mimic needs data.root"):
        get_dataset("mimic").splits()
    (tmp_path / "files").mkdir()
    write_png(tmp_path / "x.png", 0)
    with pytest.raises(XbenchError, match="lacks mimic-cxr-2.0.0-metadata.csv"):
        get_dataset("mimic", DataConfig(root=str(tmp_path), max_cases=1)).splits()
