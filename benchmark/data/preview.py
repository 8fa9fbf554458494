"""A contact sheet of a dataset's cases for a person to look at: frontal | lateral | the report."""

from pathlib import Path

from benchmark.core.errors import XbenchError
from benchmark.core.sheets import contact_sheet, save_sheet
from benchmark.data.datasets import DataConfig, get_dataset


def preview_sheet(dataset: str, cfg: DataConfig, split: str, cases: int, out: Path) -> tuple[Path, int]:
    """Write the first ``cases`` cases of ``split`` as a PNG sheet; (its path, how many rows)."""
    if cases < 1:
        raise XbenchError(f"--cases must be at least 1, not {cases}")
    ds = get_dataset(dataset, cfg)
    pairs = ds.images(ds.splits()[split][:cases])
    rows = []
    for case, (frontal, lateral) in zip(pairs.cases, pairs.pixels):
        tags = "; ".join(f.tag for f in case.report.mesh) or "(no MeSH tags)"
        report = f"IMPRESSION: {case.report.impression}\nFINDINGS: {case.report.findings}"
        text = f"case {case.case_id}\nMeSH: {tags}\n{report}"
        rows.append(([frontal, lateral], text))
    return save_sheet(contact_sheet(rows), out), len(rows)
