"""``openi``: the Open-i (Indiana University) chest X-ray collection with its real images.

Reports as for ``phantom``; images are the NLM's ``NLMCXR_png`` files (``CXR<id>_IM-<nnnn>-<nnnn>.png``)
in a local folder (``data.root``), fetched by ``xbench data download openi``. The cases, their frontal and
lateral image ids and the 1,809 / 258 / 518 split are the XRayGAN authors'.
"""

import functools
from pathlib import Path

import numpy as np

from benchmark.core.errors import XbenchError
from benchmark.data.datasets.base import Case, Dataset, ProtocolRow
from benchmark.data.datasets.openi_reports import protocol_reports
from benchmark.data.images import read_gray


class OpenI(Dataset):
    name = "openi"
    description = "Open-i reports + real NLMCXR_png images from data.root (2,585 cases, CC BY-NC-ND 4.0)"
    protocol_file = "openi.csv.gz"

    @classmethod
    def download(cls, root: Path) -> Path:
        """The two NLM archives: resumable, checked, safely unpacked; the NLMCXR_png folder."""
        from benchmark.data.datasets.download import download_openi

        return download_openi(root)

    @functools.cached_property
    def images_dir(self) -> Path:
        """``data.root`` itself or its ``NLMCXR_png`` subfolder, whichever holds the PNGs."""
        if not self.cfg.root:
            raise XbenchError(
                "dataset openi needs its images: set data.root=DIR (a folder of NLMCXR_png), "
                "or fetch them with `xbench data download openi --root DIR`"
            )
        root = Path(self.cfg.root).expanduser()
        for folder in (root / "NLMCXR_png", root):
            if folder.is_dir() and next(folder.glob("CXR*.png"), None) is not None:
                return folder
        raise XbenchError(f"no CXR*.png images in {root} or {root / 'NLMCXR_png'}; check data.root")

    def _reports(self, rows):
        return protocol_reports(self.cfg, rows)

    def _check_images(self, row: ProtocolRow) -> str | None:
        folder = self.images_dir
        for image_id in (row.frontal, row.lateral):
            if not (folder / f"{image_id}.png").is_file():
                return f"openi case {row.case_id}: missing image {folder / image_id}.png"
        return None

    def _read_pair(self, case: Case) -> tuple[np.ndarray, np.ndarray]:
        folder = self.images_dir
        return read_gray(folder / f"{case.frontal}.png"), read_gray(folder / f"{case.lateral}.png")

    def fingerprint(self) -> dict:
        folder = self.images_dir.resolve()
        return {"images": str(folder), "mtime_ns": folder.stat().st_mtime_ns}
