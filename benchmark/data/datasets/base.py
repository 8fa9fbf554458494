"""What every dataset is: protocol cases (a report + a frontal and a lateral image), split as the paper did.

A dataset subclass says where its protocol list, reports and images come from (``_protocol``,
``_reports``, ``_read_pair``); this base class resolves and checks the cases, applies the error policy and
runs every image through the one pipeline (``benchmark.data.images``) with an on-disk cache.
"""

import contextlib
import csv
import dataclasses
import functools
import gzip
import importlib.resources
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from benchmark.core import cache, progress
from benchmark.core.errors import XbenchError
from benchmark.core.parallel import parallel_map
from benchmark.core.validation import check_ranges
from benchmark.data.images import Pipeline
from benchmark.data.reports import Report

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The ``data`` section of a run config."""

    root: str | None = None  # local folder of the real images (openi, mimic)
    reports: str | None = None  # Open-i: XML folder or .tgz (default: torchxrayvision's archive); MIMIC: report root
    image_size: int = 256  # px, square; the paper trains at 256
    equalize: bool = True  # global histogram equalisation, as the paper's preprocessing
    on_error: str = "raise"  # "raise": stop at the first bad case; "skip": skip, list and count bad cases
    max_cases: int | None = None  # keep only the first N cases of each split (tiny runs and tests)
    max_eval_cases: int | None = None  # a smaller cap for val and test (evaluation cost), if set
    seed: int = 0  # phantom: the anatomy seed (with the case id)

    def __post_init__(self):
        check_ranges(self)
        if self.on_error not in ("raise", "skip"):
            raise XbenchError(f"data.on_error must be 'raise' or 'skip', not {self.on_error!r}")
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise XbenchError(f"data.image_size must be a power of two >= 8, not {self.image_size}")
        for name in ("max_cases", "max_eval_cases"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise XbenchError(f"data.{name} must be a positive number of cases, not {getattr(self, name)}")

    def cap(self, split: str) -> int | None:
        """How many cases of ``split`` to keep (None: all)."""
        if split != "train" and self.max_eval_cases is not None:
            return min(self.max_eval_cases, self.max_cases or self.max_eval_cases)
        return self.max_cases

    @property
    def pipeline(self) -> Pipeline:
        return Pipeline(size=self.image_size, equalize=self.equalize)


@dataclasses.dataclass(frozen=True)
class Case:
    """One protocol case: a report with one frontal and one lateral image of the same study."""

    case_id: str
    split: str  # "train" | "val" | "test"
    report: Report
    frontal: str  # image id (Open-i: "CXR1_1_IM-0001-4001"; MIMIC: the dicom id)
    lateral: str
    subject_id: str = ""  # MIMIC's patient (p10xxxxxx, the image folder); empty for Open-i


@dataclasses.dataclass(frozen=True)
class ProtocolRow:
    """One line of a carried protocol file: ids only, nothing resolved yet."""

    case_id: str
    split: str
    frontal: str
    lateral: str
    subject_id: str = ""  # MIMIC's patient folder (p10xxxxxx); empty for Open-i


@dataclasses.dataclass(frozen=True)
class Splits:
    train: tuple[Case, ...]
    val: tuple[Case, ...]
    test: tuple[Case, ...]
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # case id -> why (on_error = "skip")

    def __getitem__(self, split: str) -> tuple[Case, ...]:
        if split not in SPLITS:
            raise XbenchError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
        return getattr(self, split)

    @property
    def all(self) -> tuple[Case, ...]:
        return self.train + self.val + self.test


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Preprocessed images of some cases: ``pixels[i]`` is case i's [frontal, lateral], uint8 [N, 2, H, W]."""

    cases: tuple[Case, ...]
    pixels: np.ndarray
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def frontal(self) -> np.ndarray:
        return self.pixels[:, 0]

    @property
    def lateral(self) -> np.ndarray:
        return self.pixels[:, 1]


def read_protocol(filename: str) -> list[ProtocolRow]:
    """A protocol file carried in ``benchmark/data/datasets/protocol/`` (gzipped CSV, the authors' row order)."""
    ref = importlib.resources.files("benchmark.data.datasets") / "protocol" / filename
    with gzip.open(ref.open("rb"), "rt", newline="") as f:
        return [ProtocolRow(**row) for row in csv.DictReader(f)]


class Dataset(ABC):
    """A registry entry of ``DATASETS``: ``Dataset(cfg).splits()`` and ``.images(cases)``."""

    name: ClassVar[str]
    description: ClassVar[str]
    protocol_file: ClassVar[str]

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg

    # What a dataset provides.
    @abstractmethod
    def _reports(self, rows: Sequence[ProtocolRow]) -> tuple[dict[str, Report], dict[str, str]]:
        """Reports by case id, plus {case id: why} for reports that could not be read (on_error = "skip")."""

    @abstractmethod
    def _check_images(self, row: ProtocolRow) -> str | None:
        """A cheap check that a case's images can be had: None when fine, else why not."""

    @abstractmethod
    def _read_pair(self, case: Case) -> tuple[np.ndarray, np.ndarray]:
        """The raw frontal and lateral images of a case as uint8 grayscale (any size)."""

    def finding_labels(self, case: Case) -> frozenset[str]:
        """The finding labels the findings judge learns for a case: its report's abnormal MeSH major terms,
        lower case (a dataset whose images show something else says so by overriding this)."""
        return frozenset(f.term.strip().lower() for f in case.report.abnormal)

    @abstractmethod
    def fingerprint(self) -> dict:
        """What produced the raw images (source folder, renderer version, ...): part of the cache key."""

    @classmethod
    def download(cls, root: Path) -> Path:
        """Fetch the dataset's public archives into ``root``; the folder of its images. Most cannot be fetched."""
        raise XbenchError(f"nothing to download for {cls.name}: {cls.no_download}")

    no_download: ClassVar[str] = "it has no public archive"

    def summary(self, splits: "Splits") -> dict[str, object]:
        """Dataset-specific lines for ``xbench data info`` (label -> value)."""
        return {}

    # Shared by every dataset.
    def splits(self) -> Splits:
        """The protocol cases, resolved and checked, in the authors' order."""
        rows = read_protocol(self.protocol_file)
        reports, skipped = self._reports(rows)
        kept: dict[str, list[Case]] = {s: [] for s in SPLITS}
        for row in rows:
            cap = self.cfg.cap(row.split)
            if cap is not None and len(kept[row.split]) >= cap:
                continue
            problem = self._problem(row, reports)
            if problem is not None:
                self._fail_or_skip(row.case_id, problem, skipped)
                continue
            kept[row.split].append(
                Case(row.case_id, row.split, reports[row.case_id], row.frontal, row.lateral, row.subject_id)
            )
        return Splits(*(tuple(kept[s]) for s in SPLITS), skipped=skipped)

    def images(self, cases: Sequence[Case]) -> Pairs:
        """Both views of ``cases`` through the pipeline; cached on disk by what produced them."""
        pipeline = self.cfg.pipeline
        key = cache.content_key(
            {
                "dataset": self.name,
                "source": self.fingerprint(),
                "pipeline": dataclasses.asdict(pipeline),
                "cases": [(c.case_id, c.frontal, c.lateral) for c in cases],
                "on_error": self.cfg.on_error,
            }
        )
        hit = cache.load_or_compute("images", key, lambda: self._preprocess(cases, pipeline))
        skipped = dict(zip(hit["skipped_ids"].tolist(), hit["skipped_why"].tolist()))
        kept = tuple(c for c in cases if c.case_id not in skipped)
        return Pairs(kept, hit["pixels"], skipped)

    def _preprocess(self, cases: Sequence[Case], pipeline: Pipeline) -> dict[str, np.ndarray]:
        pixels, skipped = [], {}
        # closing(): a bad case under on_error=raise stops the workers now, not when the generator is collected.
        with contextlib.closing(parallel_map(functools.partial(self._prepare, pipeline=pipeline), cases)) as prepared:
            for case, pair in progress.track(
                zip(cases, prepared), f"{self.name}: preparing {len(cases)} cases", len(cases)
            ):
                if isinstance(pair, str):
                    self._fail_or_skip(case.case_id, pair, skipped)
                    continue
                pixels.append(pair)
        size = pipeline.size
        return {
            "pixels": np.stack(pixels) if pixels else np.empty((0, 2, size, size), np.uint8),
            "skipped_ids": np.array(list(skipped), dtype=str),
            "skipped_why": np.array(list(skipped.values()), dtype=str),
        }

    def _prepare(self, case: Case, pipeline: Pipeline) -> np.ndarray | str:
        """Both views of one case through the pipeline, or why they cannot be read (runs in a worker process:
        the error policy is applied by the caller, in case order)."""
        try:
            frontal, lateral = self._read_pair(case)
        except XbenchError as err:
            return str(err)
        return np.stack([pipeline(frontal), pipeline(lateral)])

    def _problem(self, row: ProtocolRow, reports: dict[str, Report]) -> str | None:
        report = reports.get(row.case_id)
        if report is None:
            return f"{self.name} case {row.case_id}: no report with this id; check data.reports"
        if report.is_empty:
            return f"{self.name} case {row.case_id}: the report has neither FINDINGS nor IMPRESSION text"
        return self._check_images(row)

    def _fail_or_skip(self, case_id: str, why: str, skipped: dict[str, str]) -> None:
        if self.cfg.on_error != "skip":
            raise XbenchError(f"{why} (set data.on_error=skip to skip bad cases)")
        skipped[case_id] = why
