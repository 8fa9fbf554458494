"""The Open-i reports that ``phantom`` and ``openi`` share, resolved for the protocol cases."""

from collections.abc import Sequence
from pathlib import Path

from benchmark.data.datasets.base import DataConfig, ProtocolRow
from benchmark.data.reports import Report, load_reports


def protocol_reports(cfg: DataConfig, rows: Sequence[ProtocolRow]) -> tuple[dict[str, Report], dict[str, str]]:
    """Reports of the protocol cases from ``data.reports`` (an XML folder or .tgz) or the shipped archive."""
    source = Path(cfg.reports).expanduser() if cfg.reports else None
    reports, skipped = load_reports(source, on_error=cfg.on_error)
    wanted = {row.case_id for row in rows}
    return reports, {case_id: why for case_id, why in skipped.items() if case_id in wanted}
