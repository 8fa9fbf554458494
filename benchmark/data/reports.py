"""Open-i radiology reports: the ``ecgen-radiology`` XML files and their MeSH findings.

The reports are read at run time from the ``NLMCXR_reports.tgz`` archive that the torchxrayvision wheel
ships (Indiana University chest X-ray collection, CC BY-NC-ND 4.0); xbench never commits copies. Each XML
holds FINDINGS and IMPRESSION text, MeSH ``<major>`` tags such as ``Pleural Effusion/right/small`` and the
ids of its images (``<parentImage id="CXR1_1_IM-0001-3001">``).
"""

import dataclasses
import functools
import importlib.util
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path

from benchmark.core.errors import XbenchError
from benchmark.data.text import split_sentences

# MeSH qualifiers, sorted into the slots of a Finding. Every qualifier that is not a side, a grade or a
# descriptor names a place (lung, base, upper lobe, hilum, thoracic vertebrae, ...).
LATERALITIES = frozenset({"right", "left", "bilateral"})
SEVERITIES = ("borderline", "mild", "small", "moderate", "large", "severe")  # mildest first
DESCRIPTORS = frozenset(
    {
        "abnormal",
        "acute",
        "blunted",
        "bronchovascular",
        "chronic",
        "degenerative",
        "diffuse",
        "elevated",
        "enlarged",
        "flattened",
        "focal",
        "healed",
        "hyperdistention",
        "hypoinflation",
        "interstitial",
        "irregular",
        "multilobar",
        "multiple",
        "obscured",
        "patchy",
        "prominent",
        "reticular",
        "round",
        "scattered",
        "streaky",
        "tortuous",
    }
)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One MeSH ``<major>`` tag, e.g. ``Calcified Granuloma/lung/upper lobe/right``."""

    term: str  # the MeSH heading, as written: "Calcified Granuloma"
    locations: tuple[str, ...] = ()  # "lung", "upper lobe", ... in the tag's order
    laterality: str | None = None  # "right" | "left" | "bilateral"
    severity: str | None = None  # one of SEVERITIES
    descriptors: tuple[str, ...] = ()  # "degenerative", "tortuous", "flattened", ...

    @property
    def tag(self) -> str:
        """The tag as Open-i writes it (qualifiers in slot order, lower case)."""
        parts = [self.term, *self.locations, *self.descriptors]
        parts += [q for q in (self.laterality, self.severity) if q]
        return "/".join(parts)

    @property
    def is_normal(self) -> bool:
        return self.term.lower() in {"normal", "no indexing"}

    @classmethod
    def parse(cls, tag: str) -> "Finding":
        term, *qualifiers = [part.strip() for part in tag.split("/")]
        if not term:
            raise ValueError(f"empty MeSH term in {tag!r}")
        locations, descriptors, laterality, severity = [], [], None, None
        for q in (q.lower() for q in qualifiers if q.strip()):
            if q in LATERALITIES:
                laterality = q
            elif q in SEVERITIES:
                severity = q
            elif q in DESCRIPTORS:
                descriptors.append(q)
            else:
                locations.append(q)
        return cls(term, tuple(locations), laterality, severity, tuple(descriptors))


@dataclasses.dataclass(frozen=True)
class Report:
    """One Open-i report: its text split into sentences of tokens, its MeSH findings and image ids."""

    report_id: str  # the XML file's number: "1" for ecgen-radiology/1.xml
    findings: str  # FINDINGS text as written ("" when absent)
    impression: str  # IMPRESSION text as written ("" when absent)
    mesh: tuple[Finding, ...] = ()
    image_ids: tuple[str, ...] = ()  # parentImage ids: "CXR1_1_IM-0001-3001"

    @property
    def findings_sentences(self) -> list[list[str]]:
        return split_sentences(self.findings)

    @property
    def impression_sentences(self) -> list[list[str]]:
        return split_sentences(self.impression)

    @property
    def text(self) -> str:
        return f"FINDINGS: {self.findings}\nIMPRESSION: {self.impression}"

    @property
    def is_empty(self) -> bool:
        """Neither FINDINGS nor IMPRESSION: 28 of the 3,955 Open-i reports; never a protocol case."""
        return not (self.findings or self.impression)

    @property
    def abnormal(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.mesh if not f.is_normal)


def parse_report_xml(data: bytes, source: str) -> Report:
    """Parse one ``ecgen-radiology`` XML document; ``source`` names it in errors."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise XbenchError(f"{source}: malformed XML ({err}); re-extract the report archive") from None
    if root.tag != "eCitation":
        raise XbenchError(f"{source}: not an ecgen-radiology report (root <{root.tag}>, expected <eCitation>)")
    sections = {el.get("Label", "").upper(): " ".join((el.text or "").split()) for el in root.iter("AbstractText")}
    findings, impression = sections.get("FINDINGS", ""), sections.get("IMPRESSION", "")
    try:
        mesh = tuple(Finding.parse(el.text or "") for el in root.iterfind("MeSH/major"))
    except ValueError as err:
        raise XbenchError(f"{source}: bad MeSH tag: {err}") from None
    image_ids = tuple(el.get("id", "") for el in root.iterfind("parentImage"))
    return Report(Path(source).stem, findings, impression, mesh, image_ids)


def shipped_reports_archive() -> Path:
    """The ``NLMCXR_reports.tgz`` inside the installed torchxrayvision wheel.

    Found through the import system without importing the package (which would import torch: seconds).
    """
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise XbenchError("torchxrayvision is not installed; run `pip install -e .` in the xbench clone")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "NLMCXR_reports.tgz"
    if not path.is_file():
        raise XbenchError(f"{path} is missing from the torchxrayvision wheel; reinstall torchxrayvision>=1.2")
    return path


def iter_report_files(source: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each ``*.xml`` in a ``.tgz`` archive or a folder of XML files."""
    if source.is_dir():
        for path in sorted(source.rglob("*.xml")):
            yield str(path), path.read_bytes()
        return
    try:
        with tarfile.open(source, "r:*") as archive:
            for member in archive:
                if member.isfile() and member.name.endswith(".xml"):
                    yield f"{source.name}:{member.name}", archive.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise XbenchError(f"{source}: cannot read the report archive ({err})") from None


def load_reports(source: Path | None = None, *, on_error: str = "raise") -> tuple[dict[str, Report], dict[str, str]]:
    """All reports by id, plus {name: reason} for the files skipped when ``on_error == "skip"``.

    ``source`` is a folder of XMLs or a .tgz; None means the shipped archive, parsed once per process.
    """
    if source is None:
        reports, skipped = _shipped_reports(on_error)
        return dict(reports), dict(skipped)
    return _parse_all(source, on_error)


@functools.lru_cache(maxsize=2)
def _shipped_reports(on_error: str) -> tuple[dict[str, Report], dict[str, str]]:
    return _parse_all(shipped_reports_archive(), on_error)


def _parse_all(source: Path, on_error: str) -> tuple[dict[str, Report], dict[str, str]]:
    reports, skipped = {}, {}
    for name, data in iter_report_files(source):
        try:
            report = parse_report_xml(data, name)
        except XbenchError as err:
            if on_error != "skip":
                raise
            skipped[Path(name).stem] = str(err)
            continue
        reports[report.report_id] = report
    return reports, skipped


def mesh_counts(reports: Iterable[Report]) -> dict[str, int]:
    """Number of reports carrying each MeSH heading (a report counts once per heading)."""
    counts: dict[str, int] = {}
    for report in reports:
        for term in {f.term for f in report.mesh}:
            counts[term] = counts.get(term, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
