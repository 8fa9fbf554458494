"""Checkpoints: tensors and plain values only, written atomically with their sha256, loaded weights-only."""

import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path

import torch
import torch.distributed as dist

from benchmark.errors import XbenchError


def _is_main() -> bool:
    """Whether this process writes files: the only one, or rank 0 of a torchrun group."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def save_checkpoint(state: dict, path: Path, *, sidecar: bool = False) -> str:
    """Write tensors and plain values (loadable with weights_only=True) atomically; return their sha256.

    The bytes are built in memory first (torch.save records the file name inside the archive, so saving
    to a temp name would change the hash). ``sidecar`` also writes ``<path>.sha256``. Main process only.
    """
    if not _is_main():
        return ""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    atomic_write(path, data)
    if sidecar:
        atomic_write(Path(f"{path}.sha256"), f"{digest}  {path.name}\n".encode())
    return digest


def load_checkpoint(path: Path, device: torch.device | str = "cpu", *, sha256: str | None = None) -> dict:
    """Load with ``weights_only=True``: a file that needs pickled code is refused, never executed.

    The sha256 is checked against ``sha256``, else against ``<path>.sha256`` when that file exists.
    """
    if not path.is_file():
        raise XbenchError(f"checkpoint {path} does not exist; check the run directory or train first")
    data = path.read_bytes()  # hash and load the same bytes
    sidecar = Path(f"{path}.sha256")
    expected = sha256
    if expected is None and sidecar.is_file():
        expected = (sidecar.read_text().split() or [""])[0]
    actual = hashlib.sha256(data).hexdigest()
    if expected is not None and actual != expected.strip().lower():
        raise XbenchError(
            f"checkpoint {path} has the wrong sha256: expected {expected.strip()}, actual {actual}; "
            "the file is corrupt or not the one meant"
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


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
