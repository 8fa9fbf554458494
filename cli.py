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
app.add_typer(data_app, name="data")
app.add_typer(ls_app, name="ls")
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


@ls_app.command("datasets")
def ls_datasets():
    """The registered datasets."""
    table = Table("name", "what")
    for name, cls in DATASETS.items():
        table.add_row(name, cls.description)
    console.print(table)


if __name__ == "__main__":
    app()
