"""Loading a user-supplied CheXNet checkpoint: used by the CheXNet feature extractor (``metrics.fidelity``) and
by ``xbench weights import`` (``metrics.weights``), which checks a file before copying it. A module of its own
so that neither of those two imports the other."""

import re
from pathlib import Path

import torch
from torch import nn

from benchmark.core.errors import XbenchError


def load_chexnet(path: Path) -> nn.Module:
    """A CheXNet DenseNet-121 (torchvision layout, 14 outputs) from a checkpoint; loaded as tensors only.

    Accepts a plain state dict or ``{"state_dict": ...}`` (arnoweng/CheXNet, XRayGAN), with or without the
    ``module.`` / ``densenet121.`` prefixes, old torchvision key names (``norm.1``) and ``classifier.0``.
    """
    from torchvision.models import densenet121

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise XbenchError(f"cannot load {path} as a tensors-only checkpoint ({str(err).splitlines()[0]})") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise XbenchError(f"{path} is not a CheXNet checkpoint: no state dict of tensors")
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"^(module\.)?(densenet121\.)?", "", key)
        key = re.sub(r"\.(norm|relu|conv)\.(\d+)", r".\1\2", key)
        renamed[key.replace("classifier.0.", "classifier.")] = value
    model = densenet121(weights=None, num_classes=14)
    try:
        model.load_state_dict(renamed)
    except RuntimeError as err:
        raise XbenchError(f"{path} does not fit CheXNet (DenseNet-121, 14 outputs): {str(err)[:300]}") from None
    return model.eval().requires_grad_(False)
