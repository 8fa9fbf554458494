"""``phantom``, the embedded default: the real Open-i reports paired with rendered radiographs.

Each case's frontal and lateral images are projections of one procedural 3D thorax (``benchmark.data.phantom``)
whose anatomy is seeded by (data.seed, case id) and whose findings follow the report's MeSH tags, so the
views are consistent by construction and what each image shows is known exactly. Runs offline.
"""

from collections import Counter

import numpy as np

from benchmark.data.datasets.base import Case, Dataset, ProtocolRow, Splits
from benchmark.data.datasets.openi_reports import protocol_reports
from benchmark.data.phantom import RENDERER_VERSION, is_modelled, render_case
from benchmark.data.phantom.findings import handler_name


class Phantom(Dataset):
    name = "phantom"
    description = "Open-i reports + rendered 3D thorax phantom radiographs (2,585 cases, offline; the default)"
    protocol_file = "openi.csv.gz"
    no_download = "it is rendered locally and needs no download"

    def _reports(self, rows):
        return protocol_reports(self.cfg, rows)

    def _check_images(self, row: ProtocolRow) -> str | None:
        return None  # rendered on demand: always available

    def _read_pair(self, case: Case) -> tuple[np.ndarray, np.ndarray]:
        # Rendered at the output size: the pipeline's resize is then the identity.
        rendered = render_case(case.case_id, case.report.mesh, seed=self.cfg.seed, size=self.cfg.image_size)
        return rendered.frontal, rendered.lateral

    def finding_labels(self, case: Case) -> frozenset[str]:
        """The findings the renderer draws (its handler names, e.g. ``effusion``): exactly what the images show."""
        return frozenset(name for f in case.report.mesh if (name := handler_name(f)) is not None)

    def fingerprint(self) -> dict:
        return {"renderer": RENDERER_VERSION, "seed": self.cfg.seed, "size": self.cfg.image_size}

    def summary(self, splits: Splits) -> dict[str, object]:
        """How much of what the reports say the renderer draws, and every MeSH term it does not model."""
        cases = splits.all
        abnormal = [c for c in cases if c.report.abnormal]
        rendered = [c for c in abnormal if any(is_modelled(f) for f in c.report.abnormal)]
        missing = Counter(t for c in cases for t in {f.term for f in c.report.abnormal if not is_modelled(f)})
        share = f" ({len(rendered) / len(abnormal):.1%} of {len(abnormal)} abnormal)" if abnormal else ""
        return {
            "cases with a rendered abnormal finding": f"{len(rendered)}{share}",
            "MeSH terms not modelled (cases)": dict(missing.most_common()),
        }
