"""The networks whose features make the chest-film space (``eval.chestfilm``), each preprocessing as its authors do.

- ``judge`` (the default, and phantom's space): the frozen findings judge's penultimate layer (``metrics.chestfilm``);
  it needs no file, so it is the only space every dataset has.
- ``xrv-densenet121``: torchxrayvision's DenseNet-121 ``densenet121-res224-all`` (Cohen et al. 2022, trained on
  eight public chest-film datasets), 1024-d: ReLU of norm5, global average pool (its ``features2``). Input as
  torchxrayvision's own pipeline makes it: one channel, resized to 224 px (bilinear, antialiased, as its
  ``fix_resolution``), grey levels mapped to [-1024, 1024] (``xrv.utils.normalize(img, 255)``). Its weights file is
  looked for where torchxrayvision keeps it (its ``cache_dir``) and in the xbench weights folder
  (``metrics.weights``); it is never downloaded.
- ``rad-dino``: Microsoft's RAD-DINO (Perez-Garcia et al. 2025, a DINOv2 ViT-B/14 trained on chest films), 768-d:
  its CLS token (``pooler_output``, as its model card). Loaded with ``transformers`` from a local directory only
  (``local_files_only``), preprocessed by its own processor config (518 px, its mean and std).

Every number measured in one of these spaces records the extractor's name and its weights' sha256
(``Extractor.provenance``).
"""

import dataclasses
import hashlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.core.errors import XbenchError
from metrics import weights
from metrics.xrv_densenet import XRV_WEIGHTS, load_xrv_densenet

JUDGE = "judge"
XRV = "xrv-densenet121"
RAD_DINO = "rad-dino"
EXTRACTORS = (JUDGE, XRV, RAD_DINO)

XRV_SIZE = 224
RAD_DINO_DIR = "rad-dino"  # under the xbench weights folder: a copy of (or a link to) the model's directory


@dataclasses.dataclass(frozen=True)
class Extractor:
    """A loaded chest-film network: ``embed`` maps uint8 [B, H, W] films to float [B, d] on the device."""

    name: str
    embed: Callable[[np.ndarray], torch.Tensor]
    provenance: dict

    @torch.no_grad()
    def features(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        """float64 [N, d] features of uint8 [N, H, W] films."""
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"films must be uint8 [N, H, W], not {images.dtype} {images.shape}")
        out = [self.embed(images[i : i + batch_size]).double().cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(out).numpy()


def load(name: str, device: torch.device) -> Extractor:
    """The extractor ``name`` (not the judge, which ``metrics.context`` loads with the findings judges)."""
    if name == XRV:
        return load_xrv(_xrv_path(), device)
    if name == RAD_DINO:
        return load_rad_dino(weights.weights_dir() / RAD_DINO_DIR, device)
    raise ValueError(f"{name!r} is not an extractor with weights; valid: {XRV}, {RAD_DINO}")


def _xrv_path() -> Path:
    found = weights.resolve(XRV)
    if found is None:
        raise XbenchError(f"eval.chestfilm={XRV} needs its weights file, found nowhere: {weights.how_to_get(XRV)}")
    return found.path


def load_xrv(path: Path, device: torch.device) -> Extractor:
    """torchxrayvision's DenseNet-121 from the weights file at ``path`` (a whole pickled model, torchxrayvision's
    format), built as ``xrv.models.DenseNet`` without its ``weights=`` argument, which would download a missing
    file."""
    net = load_xrv_densenet(path).to(device).eval()

    def embed(films: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(films, device=device).float()[:, None]  # [B, 1, H, W] grey levels 0..255
        if x.shape[-1] != XRV_SIZE:
            x = F.interpolate(x, size=(XRV_SIZE, XRV_SIZE), mode="bilinear", antialias=True)
        return net.features2((2 * x / 255 - 1) * 1024)  # [B, 1024]

    provenance = {
        "name": XRV,
        "extractor": f"torchxrayvision DenseNet-121 {XRV_WEIGHTS}: ReLU(norm5) average-pooled, 1024-d",
        "sha256": weights.sha256_of(path),
        "file": path.name,
        "size": XRV_SIZE,
    }
    return Extractor(XRV, embed, provenance)


def load_rad_dino(directory: Path, device: torch.device) -> Extractor:
    """RAD-DINO from a local model directory (config.json, preprocessor_config.json, the weights), never fetched."""
    if importlib.util.find_spec("transformers") is None:
        raise XbenchError(f"eval.chestfilm={RAD_DINO} needs the transformers package: pip install transformers")
    if not (directory / "config.json").is_file():
        raise XbenchError(
            f"eval.chestfilm={RAD_DINO} needs the microsoft/rad-dino model directory at {directory} (no config.json "
            "there): copy or link a local snapshot of https://huggingface.co/microsoft/rad-dino there"
        )
    from transformers import AutoImageProcessor, AutoModel, PreTrainedModel

    # transformers >= 5 fetches "hub kernels" for some layers by default: off, so nothing is downloaded
    no_kernels = {"use_kernels": False} if hasattr(PreTrainedModel, "use_kernels") else {}
    try:
        processor = AutoImageProcessor.from_pretrained(directory, local_files_only=True)
        net = AutoModel.from_pretrained(directory, local_files_only=True, **no_kernels).to(device).eval()
    except OSError as err:
        raise XbenchError(f"{directory}: not a loadable RAD-DINO directory ({str(err).splitlines()[0]})") from None

    def embed(films: np.ndarray) -> torch.Tensor:
        rgb = [np.repeat(f[:, :, None], 3, axis=2) for f in films]  # the processor's expected [H, W, 3] uint8
        pixels = processor(images=rgb, return_tensors="pt")["pixel_values"].to(device)
        return net(pixel_values=pixels).pooler_output  # [B, 768]: the CLS token after the last layer norm

    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    provenance = {
        "name": RAD_DINO,
        "extractor": f"RAD-DINO ({net.config.model_type}) CLS token (pooler_output), {net.config.hidden_size}-d",
        "sha256": directory_sha256(files),
        "files": {p.name: weights.sha256_of(p) for p in files},
        "size": _processor_size(processor),
    }
    return Extractor(RAD_DINO, embed, provenance)


def directory_sha256(files: list[Path]) -> str:
    """One digest of a model directory: sha256 over its files' names and sha256s, in name order."""
    return hashlib.sha256("".join(f"{p.name}\0{weights.sha256_of(p)}\n" for p in files).encode()).hexdigest()


def _processor_size(processor) -> int | None:
    """The side of the square the processor feeds the network (RAD-DINO's: a 518 px centre crop)."""
    for size in (getattr(processor, "crop_size", None), getattr(processor, "size", None)):
        for key in ("height", "shortest_edge"):  # a dict in transformers 4, a SizeDict in 5
            value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
            if value:
                return int(value)
    return None
