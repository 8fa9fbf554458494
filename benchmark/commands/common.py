"""What every command shares: the console, the one-line error exit, and the options several commands take."""

import functools
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from benchmark.core.errors import XbenchError
from benchmark.data.datasets import DATASETS

# Under torchrun every rank runs the command line; only rank 0 prints (RANK from the environment: no torch import).
console = Console(quiet=os.environ.get("RANK", "0") != "0")


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


DatasetArg = Annotated[str, typer.Argument(help=f"Dataset name: {', '.join(DATASETS)}.")]
DatasetOpt = Annotated[str, typer.Option(help=f"Dataset name: {', '.join(DATASETS)}.")]
ConfigOpt = Annotated[
    str, typer.Option("--config", help="Defaults to start from: 'paper', 'small' (a CPU benchmark) or 'tiny' (CI).")
]
RunsOpt = Annotated[Path, typer.Option(help="Folder of run directories.")]
