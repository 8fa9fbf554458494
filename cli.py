"""xbench's command line: ``xbench --help``.

Each command parses its options, calls one function of the pipeline and prints the result; bad input
(``XbenchError``) is one line on stderr and exit code 2.
"""

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from benchmark.datasets import DATASETS, DataConfig, get_dataset
from benchmark.errors import XbenchError

app = typer.Typer(
    help="xbench: generating paired chest X-rays from radiology reports, benchmarked.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect, preview and download datasets.", no_args_is_help=True)
ls_app = typer.Typer(help="List what xbench has.", no_args_is_help=True)
weights_app = typer.Typer(help="Metric weights: list, verify, import.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(ls_app, name="ls")
app.add_typer(weights_app, name="weights")
console = Console()


def user_errors(command):
    """Bad input ends the command with its one-line message on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except XbenchError as err:
            print(f"xbench: error: {err}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


# Options shared by the data commands: they build the run's DataConfig.
DatasetArg = Annotated[str, typer.Argument(help=f"Dataset name: {', '.join(DATASETS)}.")]
RootOpt = Annotated[
    str | None, typer.Option(help="Folder of the real images (openi: NLMCXR_png; mimic: mimic-cxr-jpg/2.0.0).")
]
ReportsOpt = Annotated[
    str | None, typer.Option(help="Reports: Open-i XML folder or .tgz (default: torchxrayvision's); MIMIC report root.")
]
SizeOpt = Annotated[int, typer.Option("--size", help="Image side in px (power of two).")]
OnErrorOpt = Annotated[
    str, typer.Option(help="'raise' stops at the first bad case; 'skip' skips, lists and counts them.")
]
SeedOpt = Annotated[int, typer.Option(help="Phantom anatomy seed (combined with each case id).")]


@data_app.command("info")
@user_errors
def data_info(
    dataset: DatasetArg = "phantom",
    root: RootOpt = None,
    reports: ReportsOpt = None,
    on_error: OnErrorOpt = "raise",
    seed: SeedOpt = 0,
):
    """Cases per split, skipped cases, and what the dataset's images show."""
    ds = get_dataset(dataset, DataConfig(root=root, reports=reports, on_error=on_error, seed=seed))
    splits = ds.splits()
    table = Table(title=f"{dataset}: {ds.description}", show_header=False)
    for split in ("train", "val", "test"):
        table.add_row(f"{split} cases", str(len(splits[split])))
    table.add_row("skipped cases", str(len(splits.skipped)))
    nested = {}
    for label, value in ds.summary(splits).items():
        if isinstance(value, dict):
            nested[label] = value
        else:
            table.add_row(label, str(value))
    console.print(table)
    for label, counts in nested.items():
        sub = Table(title=label)
        sub.add_column("MeSH term")
        sub.add_column("cases", justify="right")
        for term, count in counts.items():
            sub.add_row(term, str(count))
        console.print(sub)
    for case_id, why in splits.skipped.items():
        console.print(f"skipped {case_id}: {why}", markup=False)


@data_app.command("preview")
@user_errors
def data_preview(
    dataset: DatasetArg = "phantom",
    cases: Annotated[int, typer.Option(help="How many cases (rows) to show.")] = 8,
    out: Annotated[Path, typer.Option(help="Where to write the PNG contact sheet.")] = Path("sheet.png"),
    split: Annotated[str, typer.Option(help="Which split's first cases to show.")] = "test",
    root: RootOpt = None,
    reports: ReportsOpt = None,
    size: SizeOpt = 256,
    seed: SeedOpt = 0,
):
    """A contact sheet of frontal + lateral + the report's first findings, for a person to look at."""
    from benchmark.sheets import contact_sheet, save_sheet

    if cases < 1:
        raise XbenchError(f"--cases must be at least 1, not {cases}")
    ds = get_dataset(dataset, DataConfig(root=root, reports=reports, image_size=size, seed=seed, max_cases=cases))
    pairs = ds.images(ds.splits()[split])
    rows = []
    for case, (frontal, lateral) in zip(pairs.cases, pairs.pixels):
        tags = "; ".join(f.tag for f in case.report.mesh) or "(no MeSH tags)"
        rows.append(
            (
                [frontal, lateral],
                f"case {case.case_id}\nMeSH: {tags}\nFINDINGS: {case.report.findings}\n"
                f"IMPRESSION: {case.report.impression}",
            )
        )
    path = save_sheet(contact_sheet(rows), out)
    console.print(f"wrote {path} ({len(rows)} cases of {dataset}/{split}, frontal | lateral | report)")


@data_app.command("download")
@user_errors
def data_download(
    dataset: DatasetArg,
    root: Annotated[Path, typer.Option(help="Folder to download and unpack into.")] = Path("data/openi"),
):
    """Fetch a dataset's public archives (openi: the two NLM archives), resumable, checked and safely unpacked."""
    from benchmark.datasets.download import download_openi

    if dataset not in DATASETS:
        raise XbenchError(f"unknown dataset {dataset!r}; choose one of: {', '.join(sorted(DATASETS))}")
    if dataset != "openi":
        reason = {
            "phantom": "it is rendered locally and needs no download",
            "mimic": "MIMIC-CXR is credentialed: download it from PhysioNet yourself and set --root",
        }[dataset]
        raise XbenchError(f"nothing to download for {dataset}: {reason}")
    images = download_openi(root)
    console.print(f"Open-i images are in {images}; use them with --root {images}")


# Runs.
MethodOpt = Annotated[str, typer.Option(help="Method name (`xbench ls methods`).")]
DatasetOpt = Annotated[str, typer.Option(help=f"Dataset name: {', '.join(DATASETS)}.")]
ConfigOpt = Annotated[str, typer.Option("--config", help="Defaults to start from: 'paper' or 'tiny' (CPU-sized).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="key=value deviation, last word: model.vc_weight=0.1")]
RunsOpt = Annotated[Path, typer.Option(help="Folder of run directories.")]


@app.command("run")
@user_errors
def run_command(
    method: MethodOpt = "xraygan",
    dataset: DatasetOpt = "phantom",
    config: ConfigOpt = "tiny",
    variant: Annotated[str | None, typer.Option(help="A named variant of the method (default: its first).")] = None,
    seed: Annotated[int, typer.Option(help="Run seed; per-case seeds are sha256(seed, case id).")] = 0,
    set_: SetOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the resolved config and stop.")] = False,
    record: Annotated[bool, typer.Option("--record", help="Copy result.json under leaderboards/records/.")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue a killed run from its last checkpoint.")] = None,
    runs_dir: RunsOpt = Path("runs"),
):
    """Train, generate the test split, evaluate, and print the result as a table row."""
    from benchmark.config import load_config
    from benchmark.runner import run

    cfg = load_config(method, dataset, setting=config, variant=variant, seed=seed, sets=set_ or ())
    console.print_json(data=cfg.to_dict())
    if dry_run:
        return
    result = run(cfg, runs_dir=runs_dir, resume=resume, record=record)
    print_results([result])
    console.print(f"run directory: {runs_dir / result.run_id if resume is None else resume}")


@app.command("ablate")
@user_errors
def ablate_command(
    dataset: DatasetOpt = "phantom",
    config: ConfigOpt = "tiny",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds, e.g. 0,1,2.")] = "0",
    set_: SetOpt = None,
    record: Annotated[bool, typer.Option("--record", help="Copy each result under leaderboards/records/.")] = False,
    launcher: Annotated[str, typer.Option(help="'local' (one after another) or 'slurm' (submitit).")] = "local",
    runs_dir: RunsOpt = Path("runs"),
):
    """The paper's Table 2: XRayGAN full, w/o VCN, w/o MSCGAN, w/o HAE; one run per variant and seed."""
    from benchmark.config import load_config
    from benchmark.launch import launch
    from benchmark.leaderboard import TABLE2_VARIANTS

    seed_list = _parse_seeds(seeds)
    configs = [
        load_config("xraygan", dataset, setting=config, variant=v, seed=s, sets=set_ or ())
        for v in TABLE2_VARIANTS
        for s in seed_list
    ]
    print_results(launch(configs, launcher=launcher, runs_dir=runs_dir, record=record))


@app.command("table")
@user_errors
def table_command(
    dataset: DatasetOpt = "phantom",
    format: Annotated[str, typer.Option(help="Terminal output: md, csv or rich.")] = "rich",
    plots: Annotated[bool, typer.Option("--plots", help="Also write a seaborn figure per metric.")] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for <dataset>.md/.csv (default: leaderboards/).")] = None,
):
    """Table 1 and Table 2 from the recorded results, beside the paper's reported numbers."""
    from benchmark.leaderboard import (
        LEADERBOARDS,
        build_tables,
        load_records,
        load_reported,
        render_markdown,
        render_plots,
        render_rich,
        to_frame,
    )

    if format not in ("md", "csv", "rich"):
        raise XbenchError(f"--format must be md, csv or rich, not {format!r}")
    if dataset not in DATASETS:
        raise XbenchError(f"unknown dataset {dataset!r}; choose one of: {', '.join(sorted(DATASETS))}")
    out = out or LEADERBOARDS
    records = load_records(dataset)
    tables = build_tables(dataset, records, load_reported())
    markdown = render_markdown(tables)
    frame = to_frame(tables)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(out / f"{dataset}.md", f"# xbench leaderboard: {dataset}\n\n{markdown}")
    _atomic_text(out / f"{dataset}.csv", frame.to_csv(index=False))
    if plots:
        for path in render_plots(records, dataset, out / "plots"):
            console.print(f"wrote {path}")
    if format == "md":
        print(markdown)
    elif format == "csv":
        print(frame.to_csv(index=False), end="")
    else:
        for table in render_rich(tables):
            console.print(table)
    console.print(f"wrote {out / f'{dataset}.md'} and {out / f'{dataset}.csv'} ({len(records)} records)")


@app.command("check")
@user_errors
def check_command(
    records: Annotated[
        list[Path] | None, typer.Argument(help="Record files (default: every committed tiny record).")
    ] = None,
    runs_dir: RunsOpt = Path("runs/check"),
):
    """Re-run recorded tiny configurations; compare every metric within leaderboards/tolerances.toml."""
    from benchmark.check import check_record, load_tolerances
    from benchmark.leaderboard import LEADERBOARDS

    paths = records or sorted(p for p in (LEADERBOARDS / "records").glob("*/*.json") if "_tiny_" in p.name)
    if not paths:
        raise XbenchError("no records to check; record one with `xbench run --record`")
    tolerances = load_tolerances()
    rows = [row for path in paths for row in check_record(path, runs_dir, tolerances)]
    table = Table("record", "view", "metric", "recorded", "now", "tolerance", "ok", title="xbench check")
    for r in rows:
        tol = f"abs {r.tolerance.abs:g} / rel {r.tolerance.rel:g}" if r.tolerance else ""
        fmt = lambda v: "" if v is None else f"{v:.6g}"  # noqa: E731
        table.add_row(
            r.record,
            r.view,
            r.metric,
            fmt(r.recorded),
            fmt(r.now),
            tol,
            "ok" if r.ok else f"[yellow]STALE[/yellow] {r.why}" if r.stale else f"[red]REGRESSION[/red] {r.why}",
        )
    console.print(table)
    failed = [r for r in rows if not r.ok]
    if failed:
        console.print(f"{len(failed)} of {len(rows)} comparisons out of tolerance")
        raise typer.Exit(1)
    console.print(f"all {len(rows)} comparisons within tolerance ({len(paths)} records)")


@app.command("generate")
@user_errors
def generate_command(
    checkpoint: Annotated[Path, typer.Option(help="A finished run directory (holds ckpt/final.pt).")],
    report: Annotated[str | None, typer.Option(help="Report text: 'FINDINGS: ... IMPRESSION: ...'.")] = None,
    report_file: Annotated[Path | None, typer.Option(help="A text file holding the report.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for frontal.png, lateral.png and sheet.png.")] = Path("generated"),
    seed: Annotated[int, typer.Option(help="Noise seed (methods with noise).")] = 0,
):
    """The teaching use: a report a person writes becomes a frontal and a lateral PNG."""
    from benchmark.generate import generate_from_report, read_report_text

    text = read_report_text(report, report_file)
    written, unknown = generate_from_report(checkpoint, text, out, seed=seed)
    if unknown:
        console.print(f"words outside the vocabulary (read as <unk>): {', '.join(unknown)}", markup=False)
    for path in written:
        console.print(f"wrote {path}")


@app.command("figure")
@user_errors
def figure_command(
    dataset: DatasetOpt = "phantom",
    cases: Annotated[int, typer.Option(help="How many test reports (rows).")] = 4,
    out: Annotated[Path, typer.Option(help="Where to write the PNG.")] = Path("leaderboards/figure_phantom.png"),
    runs_dir: RunsOpt = Path("runs"),
):
    """The paper's Figure 4 for our runs: ground truth and every recorded method, frontal and lateral."""
    from benchmark.figure import comparison_figure

    path = comparison_figure(dataset, cases, out, runs_dir=runs_dir)
    console.print(f"wrote {path}")


@app.command("bench")
@user_errors
def bench_command(
    method: Annotated[
        list[str] | None, typer.Option(help="Method to time (repeatable); default: every trainable method.")
    ] = None,
    config: Annotated[str | None, typer.Option(help="tiny or paper; default: paper on a GPU, tiny on the CPU.")] = None,
    modes: Annotated[str, typer.Option(help="Comma-separated: fp32, bf16, nchw, compile.")] = "fp32,bf16",
    steps: Annotated[int, typer.Option(help="Timed steps per phase (the median is reported).")] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed steps before them.")] = 5,
    evaluation: Annotated[bool, typer.Option(help="Also time one full evaluation.")] = True,
    out: Annotated[Path, typer.Option(help="Where to write the document as JSON.")] = Path("bench.json"),
    record: Annotated[
        bool, typer.Option(help="Keep it under leaderboards/speed/ and re-render leaderboards/speed.md.")
    ] = False,
):
    """Training throughput of every method, stage and mode, the projected schedule, and one evaluation."""
    import json

    import torch

    from benchmark.bench import report, suite
    from benchmark.bench.suite import TRAINABLE
    from benchmark.leaderboard import LEADERBOARDS

    setting = config or ("paper" if torch.cuda.is_available() else "tiny")
    doc = suite.run_suite(
        tuple(method or TRAINABLE),
        setting,
        tuple(m.strip() for m in modes.split(",") if m.strip()),
        steps=steps,
        warmup=warmup,
        evaluation=evaluation,
        log=lambda message: console.print(f"[dim]{message}[/dim]"),
    )
    reference = report.load_reference(LEADERBOARDS / "speed_reference.toml")
    for title, headers, rows in report.tables(doc, reference):
        table = Table(*headers, title=title)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    text = json.dumps(doc, indent=1) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_text(out, text)
    console.print(f"wrote {out}")
    if record:
        path = suite.record_path(doc, LEADERBOARDS)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_text(path, text)
        markdown = report.render_markdown(suite.load_records(LEADERBOARDS), reference)
        _atomic_text(LEADERBOARDS / "speed.md", markdown)
        console.print(f"recorded {path}; wrote {LEADERBOARDS / 'speed.md'}")


# Listings.
@ls_app.command("datasets")
def ls_datasets():
    """The registered datasets."""
    table = Table("name", "what")
    for name, cls in DATASETS.items():
        table.add_row(name, cls.description)
    console.print(table)


@ls_app.command("methods")
@user_errors
def ls_methods(
    params: Annotated[bool, typer.Option("--params", help="Parameter counts at the paper setting.")] = False,
):
    """The registered methods and their variants (and parameter counts with --params)."""
    from methods import METHODS

    table = Table("name", "variants", "parameters at the paper setting" if params else "what")
    vocab = None
    if params:  # the text encoders' embeddings are counted with the Open-i train split's vocabulary
        from benchmark.text import Vocab

        train = get_dataset("phantom").splits().train
        vocab = Vocab.build((c.report.findings, c.report.impression) for c in train)
    for name, cls in METHODS.items():
        module = sys.modules[cls.__module__]
        detail = (module.__doc__ or "").strip().splitlines()[0]
        if params:
            counts = cls(cls.Config(), vocab, image_size=256, device="cpu").parameter_counts()
            detail = "\n".join(f"{k}: {v:,}" for k, v in counts.items()) or "none"
        table.add_row(name, ", ".join(cls.variants), detail)
    console.print(table)
    if params:
        console.print(f"(embeddings counted with the Open-i train vocabulary: {len(vocab):,} words)")


@ls_app.command("metrics")
def ls_metrics():
    """The registered metrics: direction, scope, weights and protocol."""
    from metrics import METRICS

    table = Table("name", "", "scope", "weights", "protocol")
    for name, spec in METRICS.items():
        table.add_row(name, spec.arrow, "/".join(spec.scope), ", ".join(spec.weights) or "-", spec.protocol_note)
    console.print(table)


@weights_app.command("list")
def weights_list():
    """Every weights file the metrics can use: source, sha256, which metrics, where it was found."""
    from metrics.weights import weights_table

    table = Table("name", "file", "used by", "found at", "sha256", "source")
    for row in weights_table():
        table.add_row(
            row["name"],
            row["file"],
            ", ".join(row["used_by"]),
            row["path"] or "[red]missing[/red]",
            row["sha256"][:16],
            row["source"],
        )
    console.print(table)


@weights_app.command("verify")
@user_errors
def weights_verify():
    """Hash every weights file present; exit 1 when one has the wrong sha256."""
    from metrics.weights import verify_weights

    rows = verify_weights()
    table = Table("name", "status", "path", "how to get it")
    for row in rows:
        table.add_row(row["name"], row["status"], row["path"] or "", row.get("hint", ""))
    console.print(table)
    if any(row["status"].startswith("wrong") for row in rows):
        raise typer.Exit(1)


@weights_app.command("import")
@user_errors
def weights_import(
    path: Annotated[Path, typer.Argument(help="A weights file; identified by its sha256.")],
    as_: Annotated[str | None, typer.Option("--as", help="Manifest name for a user-supplied file (chexnet).")] = None,
):
    """Check a weights file against the manifest and copy it into the weights folder."""
    from metrics.weights import import_weights

    console.print(f"imported {import_weights(path, as_)}")


def print_results(results) -> None:
    """Result rows: one per run, the main metrics per view."""
    table = Table("run", "N", "view", "metrics", title="results")
    for r in results:
        for view, values in r.metrics.items():
            if view not in ("frontal", "lateral", "pair") or not values:
                continue
            shown = ", ".join(
                f"{k}={v:.4g}" for k, v in values.items() if isinstance(v, float) and not k.endswith(("_n", "_ci"))
            )
            table.add_row(r.run_id, str(r.n_test_cases), view, shown)
    console.print(table)


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise XbenchError(f"--seeds must be comma-separated integers like 0,1,2, not {text!r}") from None
    if not seeds:
        raise XbenchError("--seeds needs at least one seed")
    return seeds


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


if __name__ == "__main__":
    app()
