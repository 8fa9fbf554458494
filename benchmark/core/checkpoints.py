"""Checkpoints: tensors and plain values only, written atomically with their sha256 beside them
(``<file>.sha256``), and loaded only when the bytes still match that hash."""

import hashlib
import io
import pickle
import zipfile
from pathlib import Path

import torch

from benchmark.core.distributed import world
from benchmark.core.errors import XbenchError
from benchmark.core.io import atomic_write


def sidecar(path: Path) -> Path:
    return Path(f"{path}.sha256")


def save_checkpoint(state: dict, path: Path) -> str:
    """Write ``state`` (loadable with weights_only=True) and ``<path>.sha256``; return the sha256.

    The bytes are built in memory first (torch.save records the file name inside the archive, so saving
    to a temp name would change the hash). Main process only: other ranks write nothing and get "".
    """
    if not world().is_main:
        return ""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    atomic_write(path, data)
    atomic_write(sidecar(path), f"{digest}  {path.name}\n")
    return digest


def load_checkpoint(path: Path, device: torch.device | str = "cpu", *, sha256: str | None = None) -> dict:
    """Load with ``weights_only=True`` (a file that needs pickled code is refused, never executed), after
    checking the bytes against ``sha256`` or else the ``<path>.sha256`` recorded when it was written."""
    path = Path(path)
    if not path.is_file():
        raise XbenchError(f"checkpoint {path} does not exist; check the run directory or train first")
    expected = sha256
    if expected is None:
        if not sidecar(path).is_file():
            raise XbenchError(
                f"checkpoint {path} has no recorded sha256 ({sidecar(path).name} is missing); it was not written "
                "by xbench or its write was interrupted: delete it and train again"
            )
        expected = (sidecar(path).read_text().split() or [""])[0]
    data = path.read_bytes()  # hash and load the same bytes
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected.strip().lower():
        raise XbenchError(
            f"checkpoint {path} has the wrong sha256: expected {expected.strip()}, actual {actual}; "
            "the file was changed after it was written or is not the one meant"
        )
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise XbenchError(f"corrupt checkpoint {path}: not a torch zip checkpoint; delete it to start over")
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise XbenchError(
            f"refusing to load {path}: it needs pickled code to load, not just tensors and plain "
            "values (checkpoints are shared between people; pickle runs code)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise XbenchError(f"corrupt checkpoint {path} ({str(err).splitlines()[0]}); delete it to start over") from None
