"""xbench's command line: ``xbench --help``.

Each command parses its options, calls one function of the pipeline and prints the result; bad input
(``XbenchError``) is one line on stderr and exit code 2.
"""

from pathlib import Path
from typing import Annotated

import typer

from benchmark.commands.common import ConfigOpt, DatasetOpt, RunsOpt, console, user_errors
from benchmark.commands.data import data_app
from benchmark.commands.inventory import judges_app, ls_app, weights_app
from benchmark.core.errors import XbenchError

app = typer.Typer(
    help="xbench: generating paired chest X-rays from radiology reports, benchmarked.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(ls_app, name="ls")
app.add_typer(weights_app, name="weights")
app.add_typer(judges_app, name="judges")


# The commands of a run; the helper sub-commands are in benchmark/commands/.
MethodOpt = Annotated[str, typer.Option(help="Method name (`xbench ls methods`).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="key=value deviation, last word: model.vc_weight=0.1")]


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
    verbose: Annotated[bool, typer.Option("--verbose", help="Also print the resolved config first.")] = False,
):
    """Train, generate the test split, evaluate, and print the result: metric by view, value [95 % interval]."""
    from benchmark.pipeline.config import load_config
    from benchmark.pipeline.runner import run

    cfg = load_config(method, dataset, setting=config, variant=variant, seed=seed, sets=set_ or ())
    if dry_run or verbose:
        console.print_json(data=cfg.to_dict())
    if dry_run:
        return
    title = f"{cfg.run_id}: {cfg.method} [{cfg.variant}], {cfg.dataset}, {cfg.setting} setting, seed {cfg.seed}"
    console.print(title, markup=False)
    result = run(cfg, runs_dir=runs_dir, resume=resume, record=record)
    if result is None:  # another torchrun rank: rank 0 reports
        return
    run_dir = runs_dir / result.run_id if resume is None else resume
    print_results([result], run_dir.parent)
    console.print(f"run directory: {run_dir} (config.json: the config)")


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
    from benchmark.pipeline.config import table2_configs
    from benchmark.pipeline.launch import launch

    configs = table2_configs(dataset, config, _parse_seeds(seeds), set_ or ())
    print_results(launch(configs, launcher=launcher, runs_dir=runs_dir, record=record), runs_dir)


@app.command("table")
@user_errors
def table_command(
    dataset: DatasetOpt = "phantom",
    format: Annotated[str, typer.Option(help="Terminal output: md, csv or rich.")] = "rich",
    plots: Annotated[bool, typer.Option("--plots", help="Also write a seaborn figure per metric.")] = False,
    out: Annotated[Path | None, typer.Option(help="Folder for <dataset>.md/.csv (default: leaderboards/).")] = None,
):
    """Table 1 and Table 2 from the recorded results, beside the paper's reported numbers."""
    from benchmark.pipeline.leaderboard import render_rich, verdict_lines, write_leaderboard

    if format not in ("md", "csv", "rich"):
        raise XbenchError(f"--format must be md, csv or rich, not {format!r}")
    board = write_leaderboard(dataset, out, plots=plots)
    if format == "md":
        print(board.markdown)
    elif format == "csv":
        print(board.csv, end="")
    else:
        for table, rich in zip(board.tables, render_rich(board.tables)):
            console.print(rich)
            for line in verdict_lines(table):
                console.print(line, markup=False, soft_wrap=True)
    console.print(f"wrote {', '.join(map(str, board.written))} ({board.records} records)")


@app.command("check")
@user_errors
def check_command(
    records: Annotated[
        list[Path] | None, typer.Argument(help="Record files (default: every committed record of --config).")
    ] = None,
    config: Annotated[
        str, typer.Option("--config", help="Which setting's records: tiny (CI, minutes) or small (hours, manual).")
    ] = "tiny",
    layer: Annotated[
        list[str] | None,
        typer.Option(help="metrics, steps or end-to-end (repeatable; default: all three, cheapest first)."),
    ] = None,
    runs_dir: RunsOpt = Path("runs/check"),
):
    """Check the committed records at three layers: metrics on stored samples, the first training steps, and
    re-training against the recorded seeds (README; tolerances in leaderboards/tolerances.toml)."""
    from benchmark.pipeline.check import check_records
    from benchmark.pipeline.check.tolerances import LAYERS
    from benchmark.pipeline.display import check_failures, check_summary
    from benchmark.pipeline.leaderboard import LEADERBOARDS
    from benchmark.pipeline.results import cpu_capability, cpu_model

    console.print(f"this machine: {cpu_model()}, torch kernels {cpu_capability()}", markup=False)

    def log(line: str) -> None:  # one line per record as it finishes, flushed: a log or CI is not left silent
        console.print(line, markup=False, soft_wrap=True)
        console.file.flush()

    rows, checked = check_records(records, runs_dir, LEADERBOARDS, setting=config, layers=layer or LAYERS, log=log)
    for machine in sorted({row.machine for row in checked}):
        console.print(f"recorded on: {machine}", markup=False)
    console.print(check_summary(rows))
    failed = [r for r in rows if not r.ok]
    if failed:
        for line in check_failures(failed):
            console.print(line, markup=False, soft_wrap=True)
        console.print(f"{len(failed)} of {len(rows)} comparisons out of tolerance")
        raise typer.Exit(1)
    console.print(f"all {len(rows)} comparisons within tolerance ({len(checked)} rows)")


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
    from benchmark.pipeline.generate import generate_from_report, read_report_text

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
    config: Annotated[str, typer.Option("--config", help="Whose records: small (default), tiny or paper.")] = "small",
    cases: Annotated[int, typer.Option(help="How many test reports (rows).")] = 4,
    out: Annotated[Path | None, typer.Option(help="Default: leaderboards/figure_<dataset>_<config>.png.")] = None,
    runs_dir: RunsOpt = Path("runs"),
    closest: Annotated[
        Path | None,
        typer.Option(help="A record (.json with samples): draw its samples nearest a training film instead."),
    ] = None,
):
    """The paper's Figure 4 for our runs: ground truth and every method of Table 1's one-protocol block; with
    --closest, memorisation: a record's samples nearest a training film, each beside it."""
    from benchmark.pipeline.figure import closest_copies_figure, comparison_figure

    if closest is not None:
        path = closest_copies_figure(closest, cases, out or closest.with_suffix(".closest.png"))
        console.print(f"wrote {path}")
        return
    out = out or Path(f"leaderboards/figure_{dataset}_{config}.png")
    path = comparison_figure(dataset, config, cases, out, runs_dir=runs_dir)
    console.print(f"wrote {path}")


@app.command("bench")
@user_errors
def bench_command(
    method: Annotated[
        list[str] | None, typer.Option(help="Method to time (repeatable); default: every trainable method.")
    ] = None,
    config: Annotated[str | None, typer.Option(help="tiny, small or paper (default: paper on GPU, else tiny).")] = None,
    modes: Annotated[str, typer.Option(help="Comma-separated: fp32, bf16, nchw, compile.")] = "fp32,bf16",
    steps: Annotated[int, typer.Option(help="Timed steps per phase (the median is reported).")] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed steps before them.")] = 5,
    evaluation: Annotated[bool, typer.Option(help="Also time one full evaluation.")] = True,
    out: Annotated[Path, typer.Option(help="Where to write the document as JSON.")] = Path("bench.json"),
    record: Annotated[
        bool, typer.Option(help="Keep it under leaderboards/speed/ and re-render leaderboards/speed.md.")
    ] = False,
    row_limit: Annotated[
        float | None,
        typer.Option(help="Seconds each method and mode (and the evaluation) may take; past it, the next starts."),
    ] = None,
):
    """Training throughput of every method, stage and mode, the projected schedule, and one evaluation."""
    import torch

    from benchmark.pipeline.bench import report, suite
    from benchmark.pipeline.bench.suite import TRAINABLE
    from benchmark.pipeline.display import rows_table
    from benchmark.pipeline.leaderboard import LEADERBOARDS

    setting = config or ("paper" if torch.cuda.is_available() else "tiny")
    # Written after every timed phase, not only at the end: a run cut from outside keeps what it measured.
    doc = suite.run_suite(
        tuple(method or TRAINABLE),
        setting,
        tuple(m.strip() for m in modes.split(",") if m.strip()),
        steps=steps,
        warmup=warmup,
        evaluation=evaluation,
        row_limit_s=row_limit,
        save=lambda doc: suite.save_document(doc, out, LEADERBOARDS, record=record),
        log=lambda message: console.print(f"[dim]{message}[/dim]"),
    )
    reference = report.load_reference(LEADERBOARDS / "speed_reference.toml")
    for title, headers, rows in report.tables(doc, reference):
        console.print(rows_table(title, headers, rows))
    for path in suite.save_document(doc, out, LEADERBOARDS, record=record):
        console.print(f"wrote {path}")


def print_results(results, runs_dir: Path) -> None:
    """Each run's table, then one line reading its vc against the calibration (from the run's evidence)."""
    from benchmark.pipeline.display import calibration_line, results_table
    from benchmark.pipeline.results import load_evidence

    results = [r for r in results if r is not None]
    for result, table in zip(results, results_table(results)):
        console.print(table)
        evidence = runs_dir / result.run_id / "evidence.npz"
        line = calibration_line(result, load_evidence(evidence) if evidence.is_file() else None)
        if line:
            console.print(line, markup=False, soft_wrap=True)


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise XbenchError(f"--seeds must be comma-separated integers like 0,1,2, not {text!r}") from None
    if not seeds:
        raise XbenchError("--seeds needs at least one seed")
    return seeds


if __name__ == "__main__":
    app()
