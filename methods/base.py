"""The interfaces every method and text encoder implements, and the tensors that cross them.

Conventions (asserted at the boundaries): images inside methods are float32 in [-1, 1], shape [B, 1, H, W];
on disk they are 8-bit grayscale PNG. Reports enter as ``benchmark.data.text.Tokens`` (padded id arrays).
A method file reads top to bottom: docstring (paper, reference code, every departure), ``Config``
(the paper's setting as defaults; the tiny setting in configs/tiny/), networks, then the ``Method`` subclass.
"""

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmark.core.distributed import unwrap
from benchmark.core.validation import check_ranges
from benchmark.data.text import Tokens, Vocab


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """The fields every method's ``Config`` inherits: how a run logs, saves and computes, read by the shared
    training loop (``methods.training.fit_staged``) and by ``generate_in_batches``. The first three are run
    settings (``RUN_SETTINGS``): they never change a result, so the configuration hash leaves them out.

    Precision: ``bf16`` is autocast on CUDA (the GPU default); ``cpu_bf16`` is autocast on the CPU, through
    oneDNN, which is native on CPUs with AVX-512 BF16 or AMX and emulated (slow, same numbers) elsewhere. It
    changes every result, so it is never chosen for the user: a setting turns it on in its TOML, and the
    record says so."""

    checkpoint_every: int = 20  # epochs; and always at the end of a phase
    log_every: int = 50  # steps between host syncs / log lines
    progress: bool = True  # a progress bar per epoch
    bf16: bool = True  # bf16 autocast on CUDA
    cpu_bf16: bool = False  # bf16 autocast on the CPU

    def autocasts(self, device: torch.device) -> bool:
        """Whether the forward passes on ``device`` run under bf16 autocast."""
        return self.bf16 if device.type == "cuda" else self.cpu_bf16


RUN_SETTINGS = ("checkpoint_every", "log_every", "progress")
# Fields added after records existed, with the behaviour those records had as their default: at that default
# the configuration hash leaves them out, so older records keep their run ids (and stay checkable); set, they
# enter it like any field.
LATER_FIELDS = {"cpu_bf16": False}


@dataclasses.dataclass(frozen=True)
class TokenBatch:
    """``Tokens`` as tensors on a device: [B, S, W] per section and [B, T] flat; 0 is padding."""

    findings: torch.Tensor
    impression: torch.Tensor
    flat: torch.Tensor

    @classmethod
    def of(cls, tokens: Tokens, device: torch.device | str = "cpu") -> "TokenBatch":
        return cls(
            *(
                torch.as_tensor(a, dtype=torch.long, device=device)
                for a in (tokens.findings, tokens.impression, tokens.flat)
            )
        )

    def __len__(self) -> int:
        return len(self.flat)

    def __getitem__(self, index) -> "TokenBatch":
        return TokenBatch(self.findings[index], self.impression[index], self.flat[index])


@dataclasses.dataclass(frozen=True)
class EncodedText:
    """What a text encoder gives a generator: the report vector, plus features to attend to."""

    report: torch.Tensor  # [B, D] the report vector c
    words: torch.Tensor  # [B, L, Dw] word features (HAE: FINDINGS then IMPRESSION words)
    word_mask: torch.Tensor  # [B, L] bool, True on real tokens
    sentences: torch.Tensor | None  # [B, S, Ds] sentence features (None for a flat encoder)
    sentence_mask: torch.Tensor | None


class TextEncoder(nn.Module, ABC):
    """Tokens -> EncodedText. Trained with the method that owns it, or pretrained and then frozen (AttnGAN's DAMSM,
    ``methods.damsm``; the report embedding of the faithful GAN-INT-CLS and StackGAN, ``methods.embedding``)."""

    @dataclasses.dataclass(frozen=True)
    class Config:
        embed_dim: int = 128  # word embedding size (the paper's E_EMBED_SIZE)
        hidden: int = 128  # LSTM hidden size per direction (the paper: 128)
        out_dim: int = 512  # report vector size (the official D_CHANNEL_SIZE)
        report_norm: bool = True  # layer-normalise the report vector (no affine); False: the official scale

        def __post_init__(self):
            check_ranges(self)

    def __init__(self, cfg: "TextEncoder.Config", vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def report_vector(self, fused: torch.Tensor) -> torch.Tensor:
        """The report vector from the fused section (or word) projection: LeakyReLU 0.2, then a layer norm.

        Without the norm (the official code) the vector is about 0.013 in magnitude at initialisation and its
        spread across reports 0.002 per feature: a generator that concatenates it with N(0, 1) noise, and a
        critic that reads it, see a near-constant input and learn to ignore the report (measured, tiny
        setting: the same noise with other reports moved GAN-INT-CLS, StackGAN and AttnGAN samples by 0.3, 0.0
        and 0.8 grey levels). Normalised, every report vector has unit scale per feature from the start."""
        report = F.leaky_relu(fused, 0.2)
        return F.layer_norm(report, report.shape[-1:]) if self.cfg.report_norm else report

    @abstractmethod
    def forward(self, tokens: TokenBatch) -> EncodedText: ...


@dataclasses.dataclass(frozen=True)
class PairedData:
    """Training or evaluation data of a method: reports and their real frontal + lateral images."""

    case_ids: tuple[str, ...]
    tokens: Tokens
    pixels: np.ndarray  # uint8 [N, 2, H, W]: [:, 0] frontal, [:, 1] lateral

    def __post_init__(self):
        n = len(self.case_ids)
        if not (len(self.tokens) == len(self.pixels) == n) or self.pixels.ndim != 4 or self.pixels.shape[1] != 2:
            raise ValueError(f"PairedData: {n} ids, {len(self.tokens)} reports, pixels {self.pixels.shape}")
        if self.pixels.dtype != np.uint8:
            raise ValueError(f"PairedData.pixels must be uint8, not {self.pixels.dtype}")

    @classmethod
    def of(cls, pairs, vocab: Vocab) -> "PairedData":
        """From a dataset's ``Pairs`` (preprocessed images of some cases), encoding their reports."""
        sections = [(c.report.findings, c.report.impression) for c in pairs.cases]
        return cls(tuple(c.case_id for c in pairs.cases), vocab.encode(sections), pairs.pixels)

    def __len__(self) -> int:
        return len(self.case_ids)

    @property
    def image_size(self) -> int:
        return self.pixels.shape[-1]

    def subset(self, index) -> "PairedData":
        index = np.asarray(index)
        return PairedData(tuple(np.asarray(self.case_ids)[index].tolist()), self.tokens[index], self.pixels[index])


@dataclasses.dataclass(frozen=True)
class Views:
    """Generated images: float32 in [-1, 1], [B, 1, H, W], on the CPU."""

    frontal: torch.Tensor
    lateral: torch.Tensor

    def __post_init__(self):
        for name, x in (("frontal", self.frontal), ("lateral", self.lateral)):
            if x.ndim != 4 or x.shape[1] != 1 or x.dtype != torch.float32:
                raise ValueError(f"Views.{name} must be float32 [B, 1, H, W], not {x.dtype} {tuple(x.shape)}")


# The config fields that hold a method's own generator terms beyond the shared adversarial, pixel and matching
# ones (the mechanism a method brings): read by ``Method.objective_terms`` when the config has them.
OWN_TERMS = {"vc_weight": "VC", "kl_weight": "KL", "damsm_weight": "DAMSM", "interp_weight": "INT"}
# The config field that weighs the matching-aware critic term (real image + another case's report as a negative),
# by method: XRayGAN's WGAN form, Reed's CLS, StackGAN's mismatching pairs (on or off), AttnGAN's conditional
# logits (which always score the wrong pairs: on or off).
MATCHING_FIELDS = ("mismatch_weight", "cls_weight", "mismatch_pairs", "d_condition")


@dataclasses.dataclass(frozen=True)
class ObjectiveTerms:
    """A GAN's training objective as its config sets it: what a one-protocol block must share (``shared``) and
    the method's own terms beside them."""

    adversarial: str  # "WGAN-GP (lambda 10)" | "BCE"
    l2_weight: float  # pixel MSE per view (and stage)
    matching_weight: float  # the matching-aware critic term; 0: none
    warmup_epochs: int  # L2-only epochs before the GAN phase
    own: tuple[str, ...] = ()  # e.g. ("VC x 1",)

    @property
    def shared(self) -> tuple:
        return self.adversarial, self.l2_weight, self.matching_weight, self.warmup_epochs

    def text(self, own: bool = True) -> str:
        parts = [self.adversarial, f"{self.l2_weight:g} x L2" if self.l2_weight else "no L2"]
        parts.append(f"matching term x {self.matching_weight:g}" if self.matching_weight else "no matching term")
        parts.append(f"{self.warmup_epochs} L2 warm-up epochs" if self.warmup_epochs else "no warm-up")
        if own and self.own:
            parts.append(" + ".join(self.own))
        return ", ".join(parts)


class Method(ABC):
    """A text-to-paired-X-ray method: ``fit`` on train (+ val), then ``generate`` both views per report."""

    Config: ClassVar[type[MethodConfig]]
    variants: ClassVar[dict[str, dict]] = {"default": {}}  # named config deviations; the first is the default
    paper_schedules: ClassVar[dict[str, dict]] = {}  # variant -> deviations applied at the paper setting only
    # False for a floor that is fitted, not trained (the dummy's mean image, the copier's lookup): no training
    # steps to check, and its seeds give one result
    trains: ClassVar[bool] = True
    # False for a method that trains no discriminator (a diffusion model, the dummy floor): it lists no
    # ``conditional_critics`` and tests/test_conditioning.py leaves it out. True obliges a method to list them.
    has_critics: ClassVar[bool] = True

    def __init__(
        self, cfg, vocab: Vocab, *, image_size: int = 256, device: str | torch.device | None = None, seed: int = 0
    ):
        self.cfg = cfg
        self.seed = seed
        self.vocab = vocab
        self.image_size = image_size
        self.device = torch.device(device) if device else default_device()
        self.fit_summary: dict = {}  # what fit measured about its own training (JSON values), for result.json
        self.pairs_seen = 0  # frontal + lateral pairs ``fit`` trained on in this process: the run's throughput

    @abstractmethod
    def fit(self, train: PairedData, val: PairedData | None, run_dir: Path, *, resume: bool = False) -> None:
        """Train; checkpoints and log.jsonl go under ``run_dir``; ``resume`` continues from the last checkpoint."""

    @abstractmethod
    def generate(self, tokens: Tokens, seeds: Sequence[int]) -> Views:
        """One frontal and one lateral image per report; ``seeds[i]`` fixes report i's noise (if any)."""

    def state_dict(self) -> dict:
        """Everything ``load_state_dict`` needs to generate again (tensors and plain values only): by default the
        weights of ``self.networks``, the module that ``generate`` uses (DDP's wrapper taken off)."""
        return {"generators": unwrap(self.networks).state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.networks.load_state_dict(state["generators"])

    def self_consistency(self, frontal: np.ndarray, lateral: np.ndarray) -> np.ndarray | None:
        """P(same patient) [N] of generated uint8 [N, H, W] pairs under the method's own frozen VCN, or None when
        it has none. The runner reports the mean as ``vc_self`` beside the independent judge's ``vc``, so that
        optimising against one's own judge shows."""
        return None

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per named network (for ``xbench ls methods --params``)."""
        return {}

    @abstractmethod
    def budget(self, n_train: int) -> dict:
        """The training budget on ``n_train`` cases, as the method counts it (result.json "budget"): at least
        ``epochs``, ``pairs_seen`` (every pass over the train split counted) and ``generator_updates``; a method
        may add what its comparison needs (training FLOPs, sampling cost per pair). Pretrained helpers that a
        method does not count say so in its docstring."""

    def training_steps(self, batch_data, run_dir: Path):
        """For ``xbench bench``: ``(phase, step)`` per phase of the schedule, where ``step()`` runs one training
        update on the first batch of ``batch_data(batch_size)`` (a ``PairedData``). Empty for a method that
        trains in no steps (the dummy floor)."""
        return iter(())

    @classmethod
    def objective_terms(cls, cfg) -> ObjectiveTerms | None:
        """The generator objective ``cfg`` trains with, read from its fields (``loss``, ``gp_weight``,
        ``l2_weight``, ``MATCHING_FIELDS``, ``warmup_epochs``, ``OWN_TERMS``); None for a method without critics
        (a floor, a diffusion model). The leaderboard's Table 1 headers are generated from it."""
        if not cls.has_critics:
            return None
        loss = getattr(cfg, "loss", "wgan_gp")
        adversarial = f"WGAN-GP (lambda {cfg.gp_weight:g})" if loss == "wgan_gp" else loss.upper()
        matching = next((float(getattr(cfg, f)) for f in MATCHING_FIELDS if hasattr(cfg, f)), 0.0)
        own = tuple(f"{name} x {getattr(cfg, f):g}" for f, name in OWN_TERMS.items() if getattr(cfg, f, 0) > 0)
        return ObjectiveTerms(adversarial, float(getattr(cfg, "l2_weight", 0.0)), matching, cls.warmup(cfg), own)

    @classmethod
    def warmup(cls, cfg) -> int:
        """L2-only epochs before the GAN phase (the config's ``warmup_epochs``, 0 without one)."""
        return int(getattr(cfg, "warmup_epochs", 0))

    @classmethod
    def conditional_critics(cls, cfg, image_size: int) -> dict[str, tuple]:
        """The method's conditional discriminators, freshly built from ``cfg`` in eval mode, as
        {label: (score(image [B, 1, s, s], condition [B, d]) -> [B], s, d)}; the conditioning contract test
        (tests/test_conditioning.py) checks that each one judges image and report jointly."""
        return {}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
