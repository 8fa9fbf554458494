"""``mimic``: MIMIC-CXR-JPG p10 from the user's local PhysioNet copy (credentialed access).

Layout under ``data.root`` (the ``mimic-cxr-jpg/2.0.0`` folder): ``files/p10/p<subject>/s<study>/<dicom>.jpg``
and ``mimic-cxr-2.0.0-metadata.csv[.gz]`` (its ViewPosition confirms which image is frontal and which
lateral). Reports are the ``mimic-cxr/2.0.0`` text files ``files/p10/p<subject>/s<study>.txt`` under
``data.reports`` (default: ``data.root``). The 6,654 cases and their 4,657 / 665 / 1,332 split are the
XRayGAN authors'; they took FINDINGS and IMPRESSION from the official section parser's output, which xbench
replaces by reading the two headed sections of each report.
"""

import csv
import functools
import gzip
import re
from pathlib import Path

import numpy as np

from benchmark.core.errors import XbenchError
from benchmark.data.datasets.base import Case, Dataset, ProtocolRow
from benchmark.data.images import read_gray
from benchmark.data.reports import Report

FRONTAL_VIEWS = frozenset({"PA", "AP"})
LATERAL_VIEWS = frozenset({"LATERAL"})
METADATA_NAMES = ("mimic-cxr-2.0.0-metadata.csv", "mimic-cxr-2.0.0-metadata.csv.gz")
# A section heading: a line that starts with capitals and a colon ("FINDINGS:", "IMPRESSION:", "PA AND LATERAL:").
_HEADING = re.compile(r"^\s*([A-Z][A-Z &/()-]*):", re.MULTILINE)


def report_sections(text: str) -> dict[str, str]:
    """{HEADING: text} of a MIMIC-CXR free-text report, white space collapsed."""
    marks = list(_HEADING.finditer(text))
    return {
        m.group(1).strip(): " ".join(text[m.end() : nxt.start() if nxt else len(text)].split())
        for m, nxt in zip(marks, [*marks[1:], None])
    }


class Mimic(Dataset):
    name = "mimic"
    description = "MIMIC-CXR-JPG p10 from a local PhysioNet copy in data.root (6,654 cases, credentialed)"
    protocol_file = "mimic_p10.csv.gz"
    no_download = "MIMIC-CXR is credentialed: download it from PhysioNet yourself and set --root"

    @functools.cached_property
    def root(self) -> Path:
        if not self.cfg.root:
            raise XbenchError("dataset mimic needs data.root=DIR, your local mimic-cxr-jpg/2.0.0 folder (PhysioNet)")
        root = Path(self.cfg.root).expanduser()
        if not (root / "files").is_dir():
            raise XbenchError(f"{root} has no files/ folder; point data.root at mimic-cxr-jpg/2.0.0")
        return root

    @functools.cached_property
    def view_positions(self) -> dict[str, str]:
        """dicom id -> ViewPosition, from the metadata CSV."""
        path = next((self.root / n for n in METADATA_NAMES if (self.root / n).is_file()), None)
        if path is None:
            raise XbenchError(f"{self.root} lacks {METADATA_NAMES[0]}[.gz]; it ships with MIMIC-CXR-JPG")
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", newline="") as f:
            reader = csv.DictReader(f)
            if not {"dicom_id", "ViewPosition"} <= set(reader.fieldnames or ()):
                raise XbenchError(f"{path}: expected the columns dicom_id and ViewPosition")
            return {row["dicom_id"]: row["ViewPosition"] for row in reader}

    @staticmethod
    def _patient_dir(root: Path, subject_id: str) -> Path:
        return root / "files" / f"p{subject_id[:2]}" / f"p{subject_id}"

    def _reports(self, rows):
        self.view_positions  # the tree's own files first: a wrong root is one error, not 6,654
        report_root = Path(self.cfg.reports).expanduser() if self.cfg.reports else self.root
        reports, skipped = {}, {}
        for row in rows:
            path = self._patient_dir(report_root, row.subject_id) / f"s{row.case_id}.txt"
            if not path.is_file():
                continue  # reported as "no report with this id" by the base class
            try:
                sections = report_sections(path.read_text(encoding="utf-8", errors="strict"))
            except (OSError, UnicodeDecodeError) as err:
                self._fail_or_skip(row.case_id, f"{path}: unreadable report ({err})", skipped)
                continue
            reports[row.case_id] = Report(row.case_id, sections.get("FINDINGS", ""), sections.get("IMPRESSION", ""))
        return reports, skipped

    def _image_path(self, case: ProtocolRow | Case, dicom_id: str) -> Path:
        return self._patient_dir(self.root, case.subject_id) / f"s{case.case_id}" / f"{dicom_id}.jpg"

    def _check_images(self, row: ProtocolRow) -> str | None:
        for dicom_id, views in ((row.frontal, FRONTAL_VIEWS), (row.lateral, LATERAL_VIEWS)):
            path = self._image_path(row, dicom_id)
            if not path.is_file():
                return f"mimic case {row.case_id}: missing image {path}"
            view = self.view_positions.get(dicom_id)
            if view not in views:
                expected = "/".join(sorted(views))
                return (
                    f"mimic case {row.case_id}: {dicom_id} has ViewPosition {view!r} in the metadata, "
                    f"expected {expected}"
                )
        return None

    def _read_pair(self, case: Case) -> tuple[np.ndarray, np.ndarray]:
        return read_gray(self._image_path(case, case.frontal)), read_gray(self._image_path(case, case.lateral))

    def fingerprint(self) -> dict:
        root = self.root.resolve()
        return {"root": str(root), "mtime_ns": (root / "files").stat().st_mtime_ns}
