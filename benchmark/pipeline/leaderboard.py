"""Leaderboards: the paper's Table 1 (methods) and Table 2 (XRayGAN ablations) from recorded results.

Rows are (method, variant, setting): one seed shows its value and 95 % interval over test cases
(``0.541 [0.40, 0.67]``), several seeds mean +- std over seeds. Which differences between rows are real is
decided by one rule, ``benchmark.pipeline.verdicts`` (paired on test cases, hierarchical over seeds and cases,
Holm over a table), from the evidence kept beside each record; a value is bold only when its row is separated
from every other measured row in that column. Measured calibration rows, "Real (xbench)",
show what real images score under the same protocol and N (FID/KID/precision/recall between two disjoint real
sets, the VC judge's ceiling, floor and AUROC, ``finding_auc_real``); the paper's own numbers sit apart as rows
marked "reported" (``leaderboards/reported.toml``). Markdown is rendered by hand, CSV through pandas,
the terminal through rich, plots through seaborn. Numbers are rounded here and only here.
"""

import dataclasses
import math
import tomllib
from collections import defaultdict
from pathlib import Path

from scipy import stats

from benchmark.core.errors import XbenchError
from benchmark.core.io import atomic_write
from benchmark.data.datasets import dataset_class
from benchmark.pipeline.config import load_config
from benchmark.pipeline.results import RunResult, evidence_path, load_evidence, load_result, record_name
from benchmark.pipeline.verdicts import (
    DIFFERENCES,
    RowEvidence,
    Verdict,
    has_evidence,
    row_interval,
    seed_draws,
    table_verdicts,
    with_differences,
)
from methods import get_method
from methods.base import ObjectiveTerms
from metrics import METRICS

LEADERBOARDS = Path(__file__).resolve().parents[2] / "leaderboards"
VIEWS = {"frontal": "F", "lateral": "L", "pair": "pair"}
TABLE2_VARIANTS = tuple(get_method("xraygan").variants)  # the paper's Table 2, defined once in methods/xraygan.py
# Table 1's blocks: every method under one protocol first (the paper's: XRayGAN, and each baseline as the
# XRayGAN authors' stand-in, WGAN-GP + 100 x L2), then the baselines' own objectives, then XRayGAN against
# those (the comparison a reader of both blocks makes, under the same verdict rule). A (method, variant) not
# listed is in no block; the floors sit in the first (the dummy: no report read; the copier: training films
# retrieved by report, which the memorisation column must flag).
TABLE1_BLOCKS = (
    (
        "one protocol (XRayGAN's objective without its own VC term; baselines as the XRayGAN authors' stand-ins)",
        {("xraygan", "protocol"), ("gan_int_cls", "xraygan_protocol"), ("stackgan", "xraygan_protocol"),
         ("attngan", "xraygan_protocol"), ("dummy", "default"), ("copier", "default")},
    ),
    (
        "faithful baselines (each with its own paper's objective)",
        {("gan_int_cls", "faithful"), ("stackgan", "faithful"), ("attngan", "faithful")},
    ),
    (
        "XRayGAN against the faithful baselines (across blocks: each method with its own objective)",
        {("xraygan", "full"), ("gan_int_cls", "faithful"), ("stackgan", "faithful"), ("attngan", "faithful")},
    ),
    # The strongest faithful baseline is AttnGAN's (best FID of both views and lateral finding AUROC of Table 1b at
    # the small setting, docs/results.md).
    (
        "beyond the paper: diffusion vs GANs (joint and independent denoising, XRayGAN, the strongest faithful "
        "baseline)",
        {("diffusion", "joint"), ("diffusion", "independent"), ("xraygan", "full"), ("attngan", "faithful")},
    ),
)  # fmt: skip
ONE_PROTOCOL = 0  # the block whose members must share their objective terms (ObjectiveTerms.shared)
# Registered (method, variant)s that no table shows, each with why. tests/test_leaderboard_blocks.py checks that every
# registered variant is in a Table 1 block, in Table 2 or here, so a new one never drops out silently.
UNTABULATED: dict[tuple[str, str], str] = {}
# what a verdict calls better; a difference of two metrics (verdicts.DIFFERENCES) is better where its first is
HIGHER_IS_BETTER = {name: spec.higher_is_better for name, spec in METRICS.items()} | {
    name: METRICS[first].higher_is_better for name, (first, _, _) in DIFFERENCES.items()
}
BUDGET_TOLERANCE = 0.10  # pairs seen within one block and setting may differ by this fraction


def block_terms(members, dataset: str, setting: str) -> dict[tuple[str, str], ObjectiveTerms]:
    """The objective terms of a block's members (those without critics left out) at one setting, from their
    resolved configs."""
    found = {}
    for method, variant in sorted(members):
        terms = get_method(method).objective_terms(load_config(method, dataset, setting=setting, variant=variant).model)
        if terms is not None:
            found[(method, variant)] = terms
    return found


def terms_header(terms: dict[tuple[str, str], ObjectiveTerms], one_protocol: bool) -> str:
    """The block's objective terms, generated from the configs: one protocol lists the shared terms once (an
    error if they differ) and each method's own terms; another block lists each member's."""
    if not terms:
        return ""
    if one_protocol:
        shared = {t.shared for t in terms.values()}
        if len(shared) > 1:
            raise XbenchError(f"the one-protocol block has {len(shared)} sets of terms: {sorted(shared)}")
        own = "; ".join(f"{m}: + {' + '.join(t.own)}" for (m, _), t in terms.items() if t.own)
        return f"terms: {next(iter(terms.values())).text(own=False)}" + (f"; own terms: {own}" if own else "")
    return "terms: " + "; ".join(f"{m} [{v}]: {t.text()}" for (m, v), t in terms.items())


def report_widths(members, dataset: str, setting: str) -> str:
    """The width of the report vector each member conditions on (``model.text.out_dim``), as the block header
    states it: one width for all, or each that differs from the most common."""
    widths = {}
    for method, variant in sorted(members):
        text = getattr(load_config(method, dataset, setting=setting, variant=variant).model, "text", None)
        if text is not None:
            widths[method if variant in ("default", "faithful") else f"{method} [{variant}]"] = text.out_dim
    if not widths:
        return ""
    common = max(set(widths.values()), key=list(widths.values()).count)
    odd = [f"{name} {d}-d" for name, d in widths.items() if d != common]
    return f"report vector {common}-d" + (f" ({', '.join(odd)})" if odd else "")


def tabulated() -> set[tuple[str, str]]:
    """Every (method, variant) some table shows: the Table 1 blocks' members and XRayGAN's Table 2 variants."""
    return {key for _, members in TABLE1_BLOCKS for key in members} | {("xraygan", v) for v in TABLE2_VARIANTS}


@dataclasses.dataclass(frozen=True)
class Column:
    metric: str
    view: str

    @property
    def label(self) -> str:
        return self.metric if self.view == "pair" else f"{self.metric} ({VIEWS[self.view]})"


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    kind: str  # "measured" | "calibration" | "reported"
    cells: dict[Column, tuple]  # column -> (mean, std over seeds or None, 95 % interval [lo, hi] or None)
    seeds: int = 0
    budget: dict | None = None  # the runs' result.json "budget" (epochs, pairs_seen, generator_updates, ...)
    sampling_s: float | None = None  # generation wall time per test pair (mean over seeds, the records' device)
    evidence: RowEvidence | None = None  # measured rows: what the verdicts are computed from
    dirty_seeds: int = 0  # how many of its records were made from a tree with uncommitted changes
    critic_auroc: dict | None = None  # mean over seeds of the records' training "critic_report_auroc", per view
    fit: tuple[float, int] | None = None  # fit wall time (s, mean over seeds) and the thread count it ran with


# The measured calibration rows, by the row id each metric's spec names in ``MetricSpec.calibration``.
CALIBRATION_ROWS = {
    "real": "Real (xbench): real vs real at the same N; VC of real matched pairs",
    "mismatched": "Real mismatched pairs (xbench VC floor)",
    "judge_auroc": "VC judge AUROC, real matched vs mismatched (xbench)",
    # vc measures agreement between the two views, not with the report: real pairs that ignore the report
    # score the ceiling on vc and chance on findings
    "other_case": "Real pairs of another case (xbench): one patient's views, not the report's",
}
# Companions of a metric (not registered metrics): e.g. vc's deranged pairs and the method's own VCN; then the
# differences the leaderboard derives from two of a record's metrics (vc_gap = vc - vc_deranged, case for case).
EXTRA_COLUMNS = tuple(
    Column(key, view) for spec in METRICS.values() for key in spec.companions for view in spec.scope
) + tuple(Column(name, view) for name, (_, _, view) in DIFFERENCES.items())
COMPANION_NOTES = {key: note for spec in METRICS.values() for key, note in spec.companions.items()} | {
    name: f"{name}: {first} - {second}, case for case (derived from the record; 0 when {first} is no better than "
    f"{second}); verdicts on it too"
    for name, (first, second, _) in DIFFERENCES.items()
}
GROUP_OF = {key: spec.group for spec in METRICS.values() for key in (spec.name, *spec.companions)} | {
    name: METRICS[first].group for name, (first, _, _) in DIFFERENCES.items()
}
# Each block's main table: the numbers a reader compares first (distribution in two feature spaces, fidelity to
# the case, agreement of the views and its deranged floor, memorisation). Every column, these included, is in
# its group's detail table below.
HEADLINE = tuple(
    Column(metric, view)
    for metric, views in (
        ("fid_inception", ("frontal", "lateral")),
        ("fid_chestfilm", ("frontal", "lateral")),
        ("ssim", ("frontal", "lateral")),
        ("vc", ("pair",)),
        ("vc_deranged", ("pair",)),
        ("vc_gap", ("pair",)),
        ("finding_auc", ("frontal", "lateral")),
        ("copy_rate", ("frontal", "lateral")),
    )
    for view in views
)


@dataclasses.dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...]
    setting: str = ""
    verdicts: tuple[Verdict, ...] = ()  # every paired comparison of two measured rows (Holm over the table)
    unmeasured: tuple[str, ...] = ()  # measured rows with one seed: never called separated
    no_evidence: tuple[str, ...] = ()  # measured rows whose records keep no evidence: re-evaluate them

    @property
    def separated(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.separated)


SETTING_ORDER = ("paper", "small", "tiny")  # sections of a leaderboard, largest first; rows never mix them


def load_records(dataset: str) -> list[RunResult]:
    folder = LEADERBOARDS / "records" / dataset
    return [load_result(path) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def record_evidence(record: RunResult) -> dict | None:
    """The evidence kept beside a committed record (``<record>.evidence.npz``), or None when it has none."""
    path = evidence_path(LEADERBOARDS / "records" / record.dataset / f"{record_name(record)}.json")
    return load_evidence(path) if path.is_file() else None


def load_reported() -> dict:
    path = LEADERBOARDS / "reported.toml"
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise XbenchError(f"{path}: cannot read the paper's reported numbers ({err})") from None


def build_tables(dataset: str, records: list[RunResult], reported: dict, evidence_of=record_evidence) -> list[Table]:
    """Per setting (``SETTING_ORDER``), Table 1 in blocks (``TABLE1_BLOCKS``: one protocol, then the faithful
    baselines) and Table 2 (XRayGAN's ablation variants); each measured row carries its training budget, each
    table its verdicts (``evidence_of(record)``: a record's evidence, or None). Each record gains the
    differences of ``verdicts.DIFFERENCES`` (vc_gap) first, in its metrics and its evidence."""
    records, evidence_of = _with_differences(records, evidence_of)
    settings = sorted(
        {r.setting for r in records},
        key=lambda s: (SETTING_ORDER.index(s) if s in SETTING_ORDER else len(SETTING_ORDER), s),
    )
    if not settings:
        return _setting_tables(dataset, "", [], reported, evidence_of)
    return [
        t
        for s in settings
        for t in _setting_tables(dataset, s, [r for r in records if r.setting == s], reported, evidence_of)
    ]


def _with_differences(records: list[RunResult], evidence_of) -> tuple[list[RunResult], object]:
    """The records with their derived differences, and their evidence (read once) with the same."""
    derived, evidence = [], {}
    for r in records:
        metrics, kept = with_differences(r.metrics, evidence_of(r))
        derived.append(dataclasses.replace(r, metrics=metrics))
        evidence[id(derived[-1])] = kept
    return derived, lambda r: evidence[id(r)]


def chestfilm_extractor(records: list[RunResult], setting: str) -> str | None:
    """The one chest-film feature extractor behind a setting's chest-film columns (FID, KID, density, coverage,
    copy rate), as a note; None when no record has them. Two extractors in one table would rank rows by
    distances in different feature spaces, so that is an error, not a footnote."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in records:
        name = r.config.get("eval", {}).get("chestfilm")
        provenance = [p for p in r.metrics.get("provenance", {}).values() if isinstance(p, dict) and p.get("name")]
        for p in provenance:
            if p["name"] == name:
                sha = p.get("judge_sha256") or p.get("sha256") or "?"
                found[(f"{name}: {p.get('extractor', name)}", sha)].append(f"{r.method} [{r.variant}] s{r.seed}")
                break
    if len(found) > 1:
        listing = "; ".join(
            f"{what.split(':')[0]} ({sha[:12]}) in {', '.join(rows[:3])}" for (what, sha), rows in found.items()
        )
        raise XbenchError(
            f"the {setting or 'unnamed'} setting's records mix chest-film extractors ({listing}): re-record them "
            "with one extractor (`xbench run ... --set eval.chestfilm=NAME --record`) or move the others out of "
            "leaderboards/records"
        )
    if not found:
        return None
    ((what, sha),) = found
    return f"chest-film columns: eval.chestfilm={what} (sha256 {sha[:12]}), the same for every row"


def _setting_tables(dataset: str, setting: str, records: list[RunResult], reported: dict, evidence_of) -> list[Table]:
    columns = tuple(
        Column(name, view)
        for name, spec in METRICS.items()
        for view in spec.scope
        if any(name in r.metrics.get(view, {}) for r in records)
    ) + tuple(c for c in EXTRA_COLUMNS if any(c.metric in r.metrics.get(c.view, {}) for r in records))
    notes = tuple(
        f"{METRICS[n].arrow} {n}: {METRICS[n].protocol_note}"
        for n in dict.fromkeys(c.metric for c in columns)
        if n in METRICS
    )
    notes += tuple(COMPANION_NOTES[c.metric] for c in EXTRA_COLUMNS if c in columns)
    notes += tuple(n for n in (chestfilm_extractor(records, setting),) if n)
    notes += (
        f"reported rows: {reported.get('citation', 'the paper')}; {reported.get('note', '')}".strip(),
        "protocol differences between the paper's numbers and xbench's: docs/reproduction.md",
    )
    groups: dict[tuple, list[RunResult]] = defaultdict(list)
    for r in records:
        groups[(r.method, r.variant)].append(r)
    n_test = sorted({r.n_test_cases for r in records})
    where = f"{setting} setting, " if setting else ""
    suffix = f" ({where}N = {'/'.join(map(str, n_test))} test cases)" if n_test else ""

    draws: dict = {}  # seed draws per (row, metric, view), shared by this setting's tables

    def measured(keys) -> list[Row]:
        return [_mean_row(f"{m} [{v}]", groups[(m, v)], columns, evidence_of, draws) for m, v in keys]

    def table(text: str, rows: list[Row]) -> Table:
        mine = [r for r in rows if r.kind == "measured"]
        ready = [r.evidence for r in mine if r.evidence is not None]
        found, unmeasured = table_verdicts(ready, [(c.metric, c.view) for c in columns], HIGHER_IS_BETTER, draws)
        missing = tuple(r.label for r in mine if r.evidence is None)
        return Table(
            text + suffix, columns, tuple(rows),
            notes + budget_notes(rows, setting) + critic_notes(rows) + saturated(rows), setting,
            tuple(found), tuple(unmeasured), missing,
        )  # fmt: skip

    tables = []
    for k, (label, members) in enumerate(TABLE1_BLOCKS):
        keys = sorted(key for key in groups if key in members)
        if not keys and k > 0:
            continue
        rows = (
            measured(keys)
            + _calibration_rows(setting, records, columns)
            + (_reported_rows(reported, "table1", dataset, columns) if k == 0 else [])
        )
        terms = terms_header(block_terms(members, dataset, setting), k == ONE_PROTOCOL) if setting else ""
        widths = report_widths(members, dataset, setting) if setting else ""
        header = "; ".join(part for part in (label, terms, widths) if part)
        tables.append(table(f"Table 1{'abcdefgh'[k]}: methods on {dataset}, {header}", rows))
    table2_keys = sorted(
        (k for k in groups if k[0] == "xraygan" and k[1] in TABLE2_VARIANTS), key=lambda k: TABLE2_VARIANTS.index(k[1])
    )
    rows = (
        measured(table2_keys)
        + (_calibration_rows(setting, records, columns) if table2_keys else [])
        + _reported_rows(reported, "table2", dataset, columns)
    )
    tables.append(table(f"Table 2: XRayGAN ablations on {dataset}", rows))
    return tables


def critic_notes(rows: list[Row]) -> tuple[str, ...]:
    """The recorded ``critic_report_auroc`` of the table's rows with conditional critics: does the trained critic
    read the report at all (paired, own report vs another case's, on held-out real pairs; 0.5 = it does not)."""
    found = [
        f"{r.label} {r.critic_auroc['frontal']:.2f} / {r.critic_auroc['lateral']:.2f}" for r in rows if r.critic_auroc
    ]
    if not found:
        return ()
    return (
        "critic_report_auroc (F / L; the last stage's trained critics score each real val image under its own report "
        "above another case's: 0.5 = the critic ignores the report): " + ", ".join(found),
    )


def saturated(rows: list[Row]) -> tuple[str, ...]:
    """A note for each column where every measured row has one value (precision 0 for every generator): the
    column tells the rows apart in nothing, and is read as saturated, not as a tie."""
    measured = [r for r in rows if r.kind == "measured"]
    columns = dict.fromkeys(c for r in measured for c in r.cells)
    out = []
    for col in columns:
        values = {r.cells[col][0] for r in measured if col in r.cells}
        if len(measured) > 1 and len(values) == 1 and all(col in r.cells for r in measured):
            out.append(f"{col.label}: {format_cell(values.pop(), None)} for every measured row (saturated)")
    return tuple(out)


def budget_notes(rows: list[Row], setting: str) -> tuple[str, ...]:
    """Where the pairs seen of a table's measured rows (one setting) differ by more than BUDGET_TOLERANCE, say
    so and why; rows recorded before budgets were kept are named."""
    notes = []
    # Rows that update nothing (the mean-image floor) have no training budget to compare.
    group = [row for row in rows if row.kind == "measured" and row.budget and row.budget["generator_updates"]]
    if group:
        low = min(group, key=lambda r: r.budget["pairs_seen"])
        high = max(group, key=lambda r: r.budget["pairs_seen"])
        if high.budget["pairs_seen"] > (1 + BUDGET_TOLERANCE) * low.budget["pairs_seen"]:
            why = {
                "tiny": "the tiny settings are sized to train in about a minute each on a CPU, not to equal budgets",
                "paper": "each method keeps the schedule its authors trained it with (the stand-ins: the XRayGAN "
                "authors' 20 + 150 epochs)",
            }.get(setting, "a variant changes the schedule (see its row's budget)")
            notes.append(
                f"budgets at the {setting} setting differ by more than {BUDGET_TOLERANCE:.0%} in pairs seen "
                f"({_count(low.budget['pairs_seen'])} for {low.label}, {_count(high.budget['pairs_seen'])} for "
                f"{high.label}): {why}"
            )
    missing = [row.label for row in rows if row.kind == "measured" and not row.budget]
    if missing:
        notes.append(f"no budget recorded (a record older than budgets; re-record it): {', '.join(missing)}")
    dirty = [row.label for row in rows if row.kind == "measured" and row.dirty_seeds]
    if dirty:
        notes.append(
            "made from a working tree with uncommitted changes (git_dirty; re-record from a clean commit): "
            + ", ".join(f"{r.label} ({r.dirty_seeds} of {r.seeds} seeds)" for r in rows if r.label in dirty)
        )
    return tuple(notes)


def format_budget(budget: dict | None, sampling_s: float | None = None, fit: tuple | None = None) -> str:
    """``440 ep, 796k pairs, 20.7k G updates``, then the pretraining the method counts (``pretraining: vcn 36k
    pairs``), the training FLOPs where the method counts them (``1.2e+15 FLOP``), the fit wall time with its
    thread count (``fit 80 s, 2 threads``) and the sampling time per pair (``0.41 s/pair sampling``)."""
    parts = []
    if budget:
        parts.append(
            f"{budget['epochs']} ep, {_count(budget['pairs_seen'])} pairs, "
            f"{_count(budget['generator_updates'])} G updates"
        )
        pretraining = budget.get("pretraining") or {}
        if pretraining:
            parts.append(
                "pretraining: " + ", ".join(f"{k} {_count(v['pairs_seen'])} pairs" for k, v in pretraining.items())
            )
        if budget.get("training_flops"):
            parts.append(f"{budget['training_flops']:.2g} FLOP")
    if fit is not None:
        parts.append(f"fit {fit[0]:.3g} s" + (f", {fit[1]} threads" if fit[1] else ""))
    if sampling_s is not None:
        parts.append(f"{sampling_s:.2g} s/pair sampling")
    return ", ".join(parts)


def _count(n: float) -> str:
    return f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k" if n >= 1e4 else f"{n:.0f}"


def _variants(method: str) -> dict:
    return get_method(method).variants


def _cell(runs: list[RunResult], view: str, key: str) -> tuple | None:
    """(value, None, its interval over test cases) for one run; (mean, std over seeds, None) for several (the
    interval comes from ``_seed_intervals``); None if absent."""
    found = [r.metrics[view] for r in runs if r.metrics.get(view, {}).get(key) is not None]
    if not found:
        return None
    values = [m[key] for m in found]
    if len(values) == 1:
        ci = found[0].get(f"{key}_ci")
        return values[0], None, tuple(ci) if ci else None
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)), None


def _seed_intervals(label: str, runs: list[RunResult], cells: dict, evidence, draws: dict) -> dict:
    """``cells`` of a row with several seeds, each with its 95 % interval: from the per-case evidence, seeds then
    cases (``verdicts.row_interval``, the verdicts' rule); for a metric without evidence, Student t over the
    seeds. ``draws``: the setting's seed-draw cache, shared with the verdicts."""
    out = {}
    for col, (mean, std, _) in cells.items():
        values = [r.metrics.get(col.view, {}).get(col.metric) for r in runs]
        if None in values:  # a seed lacks it: the mean of the others, no interval claimed
            out[col] = (mean, std, None)
            continue
        key = (label, col.metric, col.view)
        if evidence is not None and has_evidence(col.metric) and key not in draws:
            draws[key] = seed_draws(evidence, col.metric, col.view, values)
        if draws.get(key) is not None:
            out[col] = (mean, std, row_interval(draws[key], values))
        else:
            half = std / math.sqrt(len(values)) * float(stats.t.ppf(0.975, len(values) - 1))
            out[col] = (mean, std, (mean - half, mean + half))
    return out


def _mean_row(label: str, runs: list[RunResult], columns: tuple[Column, ...], evidence_of, draws: dict) -> Row:
    cells = {col: cell for col in columns if (cell := _cell(runs, col.view, col.metric)) is not None}
    budgets = [r.budget for r in runs]  # runs of one config: equal budgets (the train split is fixed)
    kept = [evidence_of(r) for r in runs]
    evidence = None if any(e is None for e in kept) else RowEvidence(label, tuple(r.metrics for r in runs), tuple(kept))
    if len(runs) > 1:
        cells = _seed_intervals(label, runs, cells, evidence and evidence.evidence, draws)
    budget = budgets[0] if all(budgets) else None
    dirty = sum(bool(r.git_dirty) for r in runs)
    per_pair = [r.timing_s["generate"] / r.n_test_cases for r in runs if r.timing_s.get("generate") and r.n_test_cases]
    sampling = sum(per_pair) / len(per_pair) if per_pair else None
    aurocs = [r.training["critic_report_auroc"] for r in runs if "critic_report_auroc" in (r.training or {})]
    critic = {v: sum(a[v] for a in aurocs) / len(aurocs) for v in ("frontal", "lateral")} if aurocs else None
    fits = [r.timing_s["fit"] for r in runs if r.timing_s.get("fit")]
    fit = (sum(fits) / len(fits), runs[0].versions.get("threads")) if fits else None
    return Row(
        label, "measured", cells, seeds=len(runs), budget=budget, sampling_s=sampling, evidence=evidence,
        dirty_seeds=dirty, critic_auroc=critic, fit=fit,
    )  # fmt: skip


def _calibration_rows(setting: str, runs: list[RunResult], columns: tuple[Column, ...]) -> list[Row]:
    """The measured real-image rows of one setting. Every run of a setting shares its judges and its real
    floor (same test cases, resolution and eval seed), so the first run that has a value gives it."""
    rows = []
    for row_id, label in CALIBRATION_ROWS.items():
        cells = {}
        for col in columns:
            key = METRICS[col.metric].calibration.get(row_id) if col.metric in METRICS else None
            run = next((r for r in runs if r.metrics.get(col.view, {}).get(key) is not None), None)
            if key and run is not None:
                cells[col] = _cell([run], col.view, key)
        if cells:
            rows.append(Row(label, "calibration", cells))
    return rows


def _reported_rows(reported: dict, table: str, dataset: str, columns: tuple[Column, ...]) -> list[Row]:
    """The paper's rows for this dataset; phantom (Open-i reports, rendered images) shows the Open-i rows."""
    rows = []
    by_metric = {(c.metric, c.view): c for c in columns}
    source = "openi" if dataset == "phantom" else dataset
    for entry in reported.get(table, []):
        if entry["dataset"] != source:
            continue
        cells = {}
        for key, value in entry.get("values", {}).items():
            metric, _, view = key.partition("@")
            col = by_metric.get((metric, view or "frontal")) or Column(metric, view or "frontal")
            cells[col] = (float(value), None, None)
        suffix = "reported" if source == dataset else f"reported on {source}"
        rows.append(Row(f"{entry['label']} ({suffix})", "reported", cells))
    return rows


def bold_cells(table: Table) -> set[tuple[str, Column]]:
    """(row label, column) of each value whose row is separated from every other measured row in that column."""
    measured = [r.label for r in table.rows if r.kind == "measured"]
    wins: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for v in table.separated:
        wins[(v.better, v.metric, v.view)].add(v.worse)
    return {
        (label, col)
        for col in table.columns
        for label in measured
        if len(measured) > 1 and wins[(label, col.metric, col.view)] >= set(measured) - {label}
    }


def verdict_lines(table: Table) -> list[str]:
    """The table's separated differences (better first, with their intervals) and the rows the rule cannot
    judge, as markdown lines."""
    rows = [r for r in table.rows if r.kind == "measured"]
    if len(rows) < 2:
        return []
    out = []
    if table.separated:
        out.append(
            f"Separated (paired on test cases, resampled over seeds then cases; 95 %, Holm over the table's "
            f"{len(table.verdicts)} comparisons; better minus worse):\n"
        )
        out.extend(f"- {v.text()}" for v in table.separated)
    elif table.verdicts:
        out.append(f"No difference is separated (paired rule, Holm over {len(table.verdicts)} comparisons).")
    if table.unmeasured:
        out.append(f"\nSeed variance not measured (one seed; never called separated): {', '.join(table.unmeasured)}.")
    if table.no_evidence:
        out.append(f"\nNo per-case evidence recorded (re-evaluate the record): {', '.join(table.no_evidence)}.")
    return out


def format_cell(mean: float, std: float | None, ci=None, digits: int = 3) -> str:
    """The only place numbers get rounded: ``0.541``, ``0.541 [0.40, 0.67]`` (its 95 % interval) or
    ``0.541 ± 0.012`` (seeds without an interval)."""

    def number(x: float, d: int = digits) -> str:
        return f"{x:.{d}g}" if abs(x) >= 1000 else f"{x:.{d}f}"

    text = number(mean)
    if ci is not None:
        return f"{text} [{number(ci[0], 2)}, {number(ci[1], 2)}]"
    return text if std is None else f"{text} ± {std:.{digits}f}"


SETTING_TITLES = {
    "paper": "Paper setting (256 px, the authors' schedules)",
    "small": "Small setting (64 px, all 1,809 train cases, all 518 test cases; equal budgets per block; 2 CPU cores)",
    "tiny": "Tiny setting (CI regression check: 256 train cases, 64 test cases; not a benchmark)",
}


def table_columns(table: Table) -> list[Column]:
    """Every column some row of ``table`` fills, in the table's order (reported rows may add the paper's)."""
    found = {c for r in table.rows for c in r.cells}
    return [c for c in dict.fromkeys([*table.columns, *(c for r in table.rows for c in r.cells)]) if c in found]


def column_groups(columns: list[Column]) -> dict[str, list[Column]]:
    """The detail tables of a block: its columns by their metric's group (``MetricSpec.group``), registry order."""
    groups: dict[str, list[Column]] = defaultdict(list)
    for col in columns:
        groups[GROUP_OF.get(col.metric, "other")].append(col)
    return dict(groups)


def shown_rows(table: Table, columns: list[Column], bold: set, emphasis: str):
    """(row, its cell texts) for each row with a value in ``columns``; a bold cell wrapped as ``emphasis``
    formats it (``"**{}**"`` in markdown, ``"[bold]{}[/bold]"`` in the terminal)."""
    for row in table.rows:
        if not any(col in row.cells for col in columns):
            continue
        texts = [format_cell(*row.cells[col]) if col in row.cells else "" for col in columns]
        yield row, [emphasis.format(t) if t and (row.label, c) in bold else t for c, t in zip(columns, texts)]


def _markdown_rows(table: Table, columns: list[Column], bold: set) -> list[str]:
    out = ["| method | seeds | budget | " + " | ".join(c.label for c in columns) + " |"]
    out.append("|---|---:|---|" + "---:|" * len(columns))
    for row, cells in shown_rows(table, columns, bold, "**{}**"):
        seeds = str(row.seeds) if row.kind == "measured" else "–"
        budget = format_budget(row.budget, row.sampling_s, row.fit)
        out.append(f"| {row.label} | {seeds} | {budget} | " + " | ".join(cells) + " |")
    return out


def render_markdown(tables: list[Table]) -> str:
    """Per block: the main table (``HEADLINE``), its verdicts, then one detail table per metric group."""
    out = []
    section = None
    for table in tables:
        if table.setting != section:
            section = table.setting
            out.append(f"## {SETTING_TITLES.get(section, f'{section} setting')}\n")
        columns = table_columns(table)
        bold = bold_cells(table)
        out.append(f"### {table.title}\n")
        out.extend(_markdown_rows(table, [c for c in HEADLINE if c in columns], bold))
        out.append("")
        out.extend(verdict_lines(table))
        out.append("")
        for group, members in column_groups(columns).items():
            out.append(f"<details><summary>{table.title.split(':')[0]}, {group}</summary>\n")
            out.extend(_markdown_rows(table, members, bold))
            out.append("\n</details>\n")
    notes = dict.fromkeys(n for t in tables for n in t.notes)
    out.append(
        "Notes: each block shows its main table (the headline metrics), the verdicts, then a detail table per "
        "metric group (folded). A value in **bold**: its row is separated from every other measured row in that "
        "column (the paired rule, benchmark/pipeline/verdicts.py). Each value: mean [95 % interval]. One seed: "
        "the interval is over test cases (the record's; the seed variance is not in it). Several seeds: over "
        "seeds then test cases, the rule the verdicts use (verdicts.row_interval); for a metric without per-case "
        "evidence (IS, density, coverage, the CheXNet metrics), Student t over the seeds. Rows "
        "marked (xbench) are measured on real images under the same protocol and N; rows marked (reported) are "
        "the paper's, measured by its authors' own networks; budget = the generator's training epochs (warm-up "
        "included), pairs seen (epochs x train cases), generator (denoiser) updates, the pretraining pairs seen "
        "of the method's frozen helpers where it counts them (XRayGAN's VCN), the training FLOPs where the "
        "method counts them (diffusion: 3 x forward FLOPs x pairs seen), the fit wall time with its thread count "
        "and the generation wall time per test "
        "pair on the record's device (a diffusion model spends most of its compute there).\n"
    )
    out.extend(f"- {note}" for note in notes)
    return "\n".join(out) + "\n"


def to_frame(tables: list[Table]):
    import pandas as pd

    records = []
    for table in tables:
        for row in table.rows:
            for col, (mean, std, ci) in row.cells.items():
                records.append(
                    {
                        "setting": table.setting,
                        "table": table.title,
                        "row": row.label,
                        "kind": row.kind,
                        "seeds": row.seeds,
                        "pairs_seen": (row.budget or {}).get("pairs_seen"),
                        "training_flops": (row.budget or {}).get("training_flops"),
                        "sampling_s_per_pair": row.sampling_s,
                        "metric": col.metric,
                        "view": col.view,
                        "mean": mean,
                        "std": std,
                        "ci_lo": ci[0] if ci else None,
                        "ci_hi": ci[1] if ci else None,
                    }
                )
    return pd.DataFrame.from_records(
        records,
        columns=[
            "setting",
            "table",
            "row",
            "kind",
            "seeds",
            "pairs_seen",
            "training_flops",
            "sampling_s_per_pair",
            "metric",
            "view",
            "mean",
            "std",
            "ci_lo",
            "ci_hi",
        ],
    )


def render_rich(tables: list[Table]):
    """Each block's main table (``HEADLINE``) for the terminal; the detail tables are in the markdown."""
    from rich.markup import escape
    from rich.table import Table as RichTable

    out = []
    for table in tables:
        bold = bold_cells(table)
        columns = [c for c in HEADLINE if c in table_columns(table)]
        rich = RichTable("method", "seeds", "budget", *[c.label for c in columns], title=table.title)
        for row, cells in shown_rows(table, columns, bold, "[bold]{}[/bold]"):
            rich.add_row(
                escape(row.label),  # "xraygan [full]" is no markup tag
                str(row.seeds) if row.kind == "measured" else "–",
                format_budget(row.budget, row.sampling_s, row.fit),
                *cells,
                style={"reported": "dim", "calibration": "italic"}.get(row.kind),
            )
        out.append(rich)
    return out


def render_plots(records: list[RunResult], dataset: str, out_dir: Path) -> list[Path]:
    """One seaborn figure per metric: each run's value with its 95% bootstrap interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    points = defaultdict(list)
    for r in records:
        for view, values in r.metrics.items():
            for name, value in values.items():
                if isinstance(value, float) and f"{name}_ci" in values:
                    lo, hi = values[f"{name}_ci"]
                    points[(r.setting, name, view)].append((f"{r.method}\n[{r.variant}] s{r.seed}", value, lo, hi))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    sns.set_theme(style="whitegrid")
    for (setting, name, view), rows in sorted(points.items()):
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(rows), 3.2))
        labels, values, lows, highs = zip(*rows)
        sns.pointplot(x=list(labels), y=list(values), linestyle="none", ax=ax)
        ax.errorbar(
            range(len(values)),
            values,
            yerr=[[v - lo for v, lo in zip(values, lows)], [hi - v for v, hi in zip(values, highs)]],
            fmt="none",
            capsize=4,
            color="black",
        )
        ax.set_title(f"{name} ({view}) on {dataset}, {setting} setting: value and 95% bootstrap interval")
        ax.tick_params(axis="x", labelsize=7)
        path = out_dir / f"{dataset}_{setting}_{name}_{view}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


@dataclasses.dataclass(frozen=True)
class Leaderboard:
    """What ``write_leaderboard`` rendered and wrote."""

    tables: list[Table]
    markdown: str
    csv: str
    records: int
    written: list[Path]


def write_leaderboard(dataset: str, out: Path | None = None, *, plots: bool = False) -> Leaderboard:
    """Render the dataset's tables from its records and write ``<dataset>.md``, ``.csv`` (and plots) to ``out``."""
    dataset_class(dataset)  # an unknown name is an error before anything is written
    out = out or LEADERBOARDS
    records = load_records(dataset)
    tables = build_tables(dataset, records, load_reported())
    markdown, csv = render_markdown(tables), to_frame(tables).to_csv(index=False)
    atomic_write(out / f"{dataset}.md", f"# xbench leaderboard: {dataset}\n\n{markdown}")
    atomic_write(out / f"{dataset}.csv", csv)
    written = [out / f"{dataset}.md", out / f"{dataset}.csv"]
    if plots:
        written += render_plots(records, dataset, out / "plots")
    return Leaderboard(tables, markdown, csv, len(records), written)
