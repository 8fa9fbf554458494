"""Loading a user-supplied torchxrayvision DenseNet-121 file: used by the chest-film extractor
(``metrics.chestfilm_extractors``) and by ``xbench weights import`` (``metrics.weights``), which checks a file before
copying it. A module of its own so that neither of those two imports the other (as ``metrics.chexnet``)."""

from pathlib import Path

import torch
from torch import nn

from benchmark.core.errors import XbenchError

XRV_WEIGHTS = "densenet121-res224-all"  # torchxrayvision's name of the weights (its model_urls key)


def load_xrv_densenet(path: Path) -> nn.Module:
    """torchxrayvision's DenseNet-121 from the weights file at ``path`` (a whole pickled model, torchxrayvision's
    format), built as ``xrv.models.DenseNet`` without its ``weights=`` argument, which would download a missing
    file."""
    import torchxrayvision as xrv

    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)  # the authors' format: a pickled module
        net = xrv.models.DenseNet(weights=None, num_classes=len(xrv.models.model_urls[XRV_WEIGHTS]["labels"]))
        net.load_state_dict(saved.state_dict())
    except Exception as err:  # a file that is not the model: say which and why, on one line
        first = (str(err).splitlines() or [""])[0]
        raise XbenchError(
            f"{path} is not torchxrayvision's {XRV_WEIGHTS} DenseNet-121 ({type(err).__name__}: {first})"
        ) from None
    return net
