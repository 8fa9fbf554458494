"""``xbench ls``, ``xbench weights`` and ``xbench judges``: what xbench has, the metrics' weights, the judges."""

from pathlib import Path
from typing import Annotated

import typer

from benchmark.commands.common import ConfigOpt, DatasetOpt, console, user_errors

ls_app = typer.Typer(help="List what xbench has.", no_args_is_help=True)
weights_app = typer.Typer(help="Metric weights: list, verify, import.", no_args_is_help=True)
judges_app = typer.Typer(help="The learned judges (vc, finding_auc).", no_args_is_help=True)


@ls_app.command("datasets")
def ls_datasets():
    """The registered datasets."""
    from benchmark.pipeline.display import datasets_table

    console.print(datasets_table())


@ls_app.command("methods")
@user_errors
def ls_methods(
    params: Annotated[bool, typer.Option("--params", help="Parameter counts at the paper setting.")] = False,
):
    """The registered methods and their variants (and parameter counts with --params)."""
    from benchmark.pipeline.catalog import method_catalog
    from benchmark.pipeline.display import methods_table

    entries, vocab_size = method_catalog(parameters=params)
    console.print(methods_table(entries))
    if params:
        console.print(f"(embeddings counted with the Open-i train vocabulary: {vocab_size:,} words)")


@ls_app.command("metrics")
def ls_metrics():
    """The registered metrics: direction, scope, weights and protocol."""
    from benchmark.pipeline.display import metrics_table

    console.print(metrics_table())


@weights_app.command("list")
def weights_list():
    """Every weights file the metrics can use: source, sha256, which metrics, where it was found."""
    from benchmark.pipeline.display import weights_list_table
    from metrics.weights import weights_table

    console.print(weights_list_table(weights_table()))


@weights_app.command("verify")
@user_errors
def weights_verify():
    """Hash every weights file present; exit 1 when one has the wrong sha256."""
    from benchmark.pipeline.display import weights_verify_table
    from metrics.weights import verify_weights

    rows = verify_weights()
    console.print(weights_verify_table(rows))
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


@judges_app.command("freeze")
@user_errors
def judges_freeze(dataset: DatasetOpt = "phantom", config: ConfigOpt = "tiny"):
    """Train (or take from the cache) the judges of a setting and commit them under leaderboards/judges/."""
    from benchmark.pipeline.judges import freeze_judges

    for path in freeze_judges(dataset, config):
        console.print(f"wrote {path}")


@judges_app.command("certify")
@user_errors
def judges_certify(dataset: DatasetOpt = "phantom", config: ConfigOpt = "small"):
    """Measure what the committed judges see on real images and write leaderboards/judges/certificates.json."""
    from benchmark.pipeline.judges import certify_judges

    console.print(f"wrote {certify_judges(dataset, config)}")
