"""The shipped Open-i reports, the carried protocol, MeSH parsing and text normalisation."""

import csv

import pytest

from benchmark.core.errors import XbenchError
from benchmark.data.datasets.base import read_protocol
from benchmark.data.reports import Finding, load_reports, parse_report_xml
from tests.conftest import SHARED_SPLITS


@pytest.fixture(scope="module")
def reports():
    reports, skipped = load_reports()
    assert skipped == {}
    return reports


def test_all_shipped_reports_parse(reports):
    assert len(reports) == 3955
    # 28 reports have neither section: the XRayGAN authors' filter dropped them, as does the protocol.
    assert sum(r.is_empty for r in reports.values()) == 28


def test_protocol_cases_resolve_in_the_xmls(reports):
    rows = read_protocol("openi.csv.gz")
    assert len(rows) == 2585 == len({r.case_id for r in rows})
    assert [sum(r.split == s for r in rows) for s in ("train", "val", "test")] == [1809, 258, 518]
    for row in rows:
        report = reports[row.case_id]  # KeyError = an id that does not resolve
        assert not report.is_empty
        assert {row.frontal, row.lateral} <= set(report.image_ids), row.case_id  # some reports list 3 images


def test_mimic_protocol_sizes():
    rows = read_protocol("mimic_p10.csv.gz")
    assert len(rows) == 6654 == len({r.case_id for r in rows})
    assert [sum(r.split == s for r in rows) for s in ("train", "val", "test")] == [4657, 665, 1332]
    assert all(r.subject_id.startswith("10") and len(r.subject_id) == 8 for r in rows)


@pytest.mark.skipif(not SHARED_SPLITS.is_dir(), reason="the authors' lists in ../shared are not here")
@pytest.mark.parametrize("prefix,protocol", [("openi", "openi.csv.gz"), ("MIMIC_p10", "mimic_p10.csv.gz")])
def test_carried_protocol_equals_the_authors_lists(prefix, protocol):
    """The compact file is a faithful copy of the XRayGAN authors' case lists, order included."""

    def read(name):
        with open(SHARED_SPLITS / name, newline="") as f:
            return list(csv.DictReader(f))

    order = [r["subject_id"] for r in read(f"{prefix}_reports.csv")]
    split = {r["subject_id"]: s for s in ("train", "val", "test") for r in read(f"{prefix}_report_{s}.csv")}
    views = {}
    for r in read(f"{prefix}_images.csv"):
        views.setdefault(r["subject_id"], {})[r["direction"]] = r["dicom_id"]
    expected = [(i, split[i], views[i]["F"], views[i]["L"]) for i in order]
    assert [(r.case_id, r.split, r.frontal, r.lateral) for r in read_protocol(protocol)] == expected


@pytest.mark.parametrize(
    "tag,expected",
    [
        ("Pleural Effusion/right/small", Finding("Pleural Effusion", (), "right", "small")),
        ("Calcified Granuloma/lung/upper lobe/right", Finding("Calcified Granuloma", ("lung", "upper lobe"), "right")),
        ("Cardiomegaly/mild", Finding("Cardiomegaly", severity="mild")),
        ("Thoracic Vertebrae/degenerative/mild", Finding("Thoracic Vertebrae", (), None, "mild", ("degenerative",))),
        ("Lung/hypoinflation", Finding("Lung", ("lung",)[:0], descriptors=("hypoinflation",))),
        ("normal", Finding("normal")),
    ],
)
def test_mesh_tags_parse_into_slots(tag, expected):
    assert Finding.parse(tag) == expected


def test_every_shipped_tag_survives_a_round_trip(reports):
    findings = {f for r in reports.values() for f in r.mesh}
    assert len(findings) > 1000
    assert all(Finding.parse(f.tag) == f for f in findings)
    assert Finding.parse("normal").is_normal and not Finding.parse("Cardiomegaly").is_normal


def test_report_10_is_read_whole(reports):
    r = reports["10"]
    assert r.mesh == (Finding("Calcified Granuloma", ("lung", "upper lobe"), "right"),)
    assert r.impression == "No acute cardiopulmonary process."
    assert r.findings_sentences[0][:3] == ["the", "cardiomediastinal", "silhouette"]
    assert r.image_ids == ("CXR10_IM-0002-1001", "CXR10_IM-0002-2001")


def test_malformed_xml_names_the_file():
    with pytest.raises(XbenchError, match=r"bad\.xml: malformed XML"):
        parse_report_xml(b"<eCitation><MeSH>", "reports/bad.xml")
    with pytest.raises(XbenchError, match=r"other\.xml: not an ecgen-radiology report"):
        parse_report_xml(b"<html/>", "reports/other.xml")


def test_a_bad_file_in_a_report_folder_is_raised_or_skipped(report_folder):
    (report_folder / "999999.xml").write_text("<eCitation><Abstract>")
    with pytest.raises(XbenchError, match="999999.xml"):
        load_reports(report_folder)
    reports, skipped = load_reports(report_folder, on_error="skip")
    assert list(skipped) == ["999999"] and "malformed XML" in skipped["999999"]
    assert len(reports) == 6
