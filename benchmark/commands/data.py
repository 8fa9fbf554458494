"""``xbench data``: what a dataset holds, a contact sheet of it, and fetching Open-i's public archives."""

from pathlib import Path
from typing import Annotated

import typer

from benchmark.commands.common import DatasetArg, console, user_errors
from benchmark.data.datasets import DataConfig, dataset_class, get_dataset

data_app = typer.Typer(help="Inspect, preview and download datasets.", no_args_is_help=True)

# Options of the commands that build a DataConfig.
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
    realism: Annotated[
        bool, typer.Option(help="Also measure per view the side-band background and spectral slope (256 px).")
    ] = False,
    realism_cases: Annotated[int, typer.Option(help="How many cases --realism measures.")] = 200,
):
    """Cases per split, skipped cases, and what the dataset's images show."""
    from benchmark.data.datasets.realism import realism_summary
    from benchmark.pipeline.display import data_info_tables

    ds = get_dataset(dataset, DataConfig(root=root, reports=reports, on_error=on_error, seed=seed))
    splits = ds.splits()
    extra = realism_summary(ds, splits.all, realism_cases) if realism else {}
    for table in data_info_tables(dataset, ds, splits, extra):
        console.print(table)
    if splits.skipped:
        for line in skipped_lines(dataset, root, splits.skipped):
            console.print(line, markup=False, soft_wrap=True)


SKIPPED_SHOWN = 5  # a partial download skips thousands of cases: the first few, the count, and the file


def skipped_lines(dataset: str, root: str | None, skipped: dict[str, str]) -> list[str]:
    """The count of skipped cases and the first few; the full list (case id, tab, why) is written atomically to
    ``<cache>/skipped/<dataset>_<root key>.tsv``, which the last line names."""
    from benchmark.core.cache import cache_root, content_key
    from benchmark.core.io import atomic_write

    key = content_key({"dataset": dataset, "root": str(Path(root).resolve()) if root else None})[:12]
    path = cache_root() / "skipped" / f"{dataset}_{key}.tsv"
    atomic_write(path, "".join(f"{case_id}\t{why}\n" for case_id, why in skipped.items()))
    lines = [f"skipped {len(skipped)} cases; the first {min(len(skipped), SKIPPED_SHOWN)}:"]
    lines += [f"  {case_id}: {why}" for case_id, why in list(skipped.items())[:SKIPPED_SHOWN]]
    return lines + [f"all {len(skipped)} skipped cases, with why: {path}"]


@data_app.command("preview")
@user_errors
def data_preview(
    dataset: DatasetArg = "phantom",
    cases: Annotated[int, typer.Option(help="How many cases (rows) to show.")] = 12,
    out: Annotated[Path, typer.Option(help="Where to write the PNG contact sheet.")] = Path("sheet.png"),
    split: Annotated[str, typer.Option(help="Which split's first cases to show.")] = "test",
    root: RootOpt = None,
    reports: ReportsOpt = None,
    size: SizeOpt = 256,
    seed: SeedOpt = 0,
):
    """A contact sheet of frontal + lateral + the report's first findings, for a person to look at."""
    from benchmark.data.preview import preview_sheet

    cfg = DataConfig(root=root, reports=reports, image_size=size, seed=seed, max_cases=max(cases, 1))
    path, n = preview_sheet(dataset, cfg, split, cases, out)
    console.print(f"wrote {path} ({n} cases of {dataset}/{split}, frontal | lateral | report)")


@data_app.command("download")
@user_errors
def data_download(
    dataset: DatasetArg,
    root: Annotated[Path, typer.Option(help="Folder to download and unpack into.")] = Path("data/openi"),
):
    """Fetch a dataset's public archives (openi: the two NLM archives), resumable, checked and safely unpacked."""
    images = dataset_class(dataset).download(root)
    console.print(f"{dataset} images are in {images}; use them with --root {images}")
