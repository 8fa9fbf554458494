"""DAMSM, the Deep Attentional Multimodal Similarity Model of AttnGAN: image and report encoders pretrained to
match an image's regions with a report's words, then frozen; its matching loss trains AttnGAN's generator.

Paper: Xu et al., "AttnGAN" (CVPR 2018), section 3.3 (eqs. 7-13). Reference code: taoxugit/AttnGAN
``code/pretrain_DAMSM.py``, ``code/model.py`` CNN_ENCODER and ``code/miscc/losses.py`` (MIT); no code is copied.
The text encoder is the method's own (the HAE); one image encoder per view. Defaults are the reference's
``cfg/DAMSM/bird.yml``: gamma1 4, gamma2 5, gamma3 10, batch 48, Adam 2e-3 with a new optimiser every epoch
and lr x 0.98 per epoch (floor lr / 10), text-encoder gradient norm clipped at 0.25. The image backbones start
from random weights (no downloads): ``inception_v3`` as the reference's layout, ``resnet18``, or ``small``
(a few strided convolutions, for CPU tests).
"""

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18
from torchvision.models.inception import BasicConv2d, Inception3

from benchmark.core.validation import check_ranges
from benchmark.data.images import to_unit_range
from benchmark.data.text import Tokens
from methods.base import MethodConfig, TextEncoder, TokenBatch
from methods.layers import discriminator_norm
from methods.training import autocast

VIEWS = ("frontal", "lateral")


@dataclasses.dataclass(frozen=True)
class DAMSMConfig:
    """The DAMSM and its pretraining (the reference's ``cfg/DAMSM/bird.yml`` and ``pretrain_DAMSM.py``)."""

    backbone: str = "inception_v3"  # "inception_v3" | "resnet18" | "small" (random init: see the docstring)
    width: int = 32  # channels of the first "small" layer (ignored by the torchvision backbones)
    gamma1: float = 4.0  # word -> region attention sharpness
    gamma2: float = 5.0  # word relevance aggregation
    gamma3: float = 10.0  # similarity scale in the batch softmax
    epochs: int = 600
    batch_size: int = 48
    lr: float = 2e-3  # a new Adam every epoch; lr x lr_decay per epoch while above lr / 10
    lr_decay: float = 0.98
    betas: tuple[float, float] = (0.5, 0.999)
    grad_clip: float = 0.25  # max gradient norm of the text encoder

    def __post_init__(self):
        check_ranges(self)
        if self.backbone not in ("inception_v3", "resnet18", "small"):  # the keys of BACKBONES below
            raise ValueError(
                f"attngan: damsm.backbone must be 'inception_v3', 'resnet18' or 'small', not {self.backbone!r}"
            )


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax over ``dim`` where ``mask`` is True; exactly zero elsewhere, and a zero row where nothing is."""
    scores = scores.float().masked_fill(~mask, torch.finfo(torch.float32).min)
    return torch.softmax(scores, dim=dim) * mask  # exp(min - max) underflows to 0 on the masked entries


def compact_words(words: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's real words first (order kept), cut to the longest row: [B, L', D], [B, L'].

    The HAE lays words out sentence slot by sentence slot, so most of its [B, S*W] positions are padding;
    masked attention ignores them anyway, this only saves the compute (one host sync for L').
    """
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
    length = max(int(mask.sum(1).max()), 1) if mask.numel() else 1
    order = order[:, :length]
    return words.gather(1, order[..., None].expand(-1, -1, words.shape[-1])), mask.gather(1, order)


@dataclasses.dataclass(frozen=True)
class Text:
    """The text encoder's output for some reports (words compacted with ``compact_words``)."""

    report: torch.Tensor  # [N, D] the sentence feature
    words: torch.Tensor  # [N, L, Dw]
    mask: torch.Tensor  # [N, L] bool
    flat: torch.Tensor  # [N, T] token ids, to find identical reports

    def select(self, index: torch.Tensor) -> "Text":
        words, mask = self.words[index], self.mask[index]
        length = max(int(mask.sum(1).max()), 1)  # words are compacted: trim to this batch's longest
        return Text(self.report[index], words[:, :length], mask[:, :length], self.flat[index])


def identical_reports(flat: torch.Tensor) -> torch.Tensor:
    """[B, B] bool: the reports of i and j are token for token the same (True on the diagonal)."""
    return (flat[:, None, :] == flat[None, :, :]).all(-1)


def down_block(cin: int, cout: int, norm: str | None = "batch") -> list[nn.Module]:
    """conv4x4 stride 2, the norm ("batch", "instance" or None), LeakyReLU 0.2: AttnGAN's downsampling block."""
    layers = [nn.Conv2d(cin, cout, 4, 2, 1, bias=False)]
    return layers + ([discriminator_norm(norm, cout)] if norm else []) + [nn.LeakyReLU(0.2)]


class SmallBackbone(nn.Module):
    """A few strided convolutions (CPU tests only): regions at 1/16 of the input, a pooled global code."""

    def __init__(self, width: int):
        super().__init__()
        w = width
        self.local = nn.Sequential(
            *down_block(1, w, norm=None), *down_block(w, 2 * w), *down_block(2 * w, 4 * w), *down_block(4 * w, 8 * w)
        )
        self.glob = nn.Sequential(*down_block(8 * w, 16 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.local_dim, self.global_dim = 8 * w, 16 * w

    def forward(self, x):
        local = self.local(x)
        return local, self.glob(local)


class ResNetBackbone(nn.Module):
    """torchvision ResNet-18 (random init, 1-channel conv1): regions from layer3 (1/16), code from layer4."""

    def __init__(self, width: int):
        super().__init__()
        net = resnet18(weights=None)
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.local = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
        self.glob = nn.Sequential(net.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.local_dim, self.global_dim = 256, 512

    def forward(self, x):
        local = self.local(x)
        return local, self.glob(local)


class InceptionBackbone(nn.Module):
    """torchvision Inception-v3 (random init, 1-channel first conv), input upsampled to 299 as the reference:
    regions from Mixed_6e (768 x 17 x 17), code from the final 2048-d pool."""

    def __init__(self, width: int):
        super().__init__()
        net = Inception3(aux_logits=False, init_weights=True)
        net.Conv2d_1a_3x3 = BasicConv2d(1, 32, kernel_size=3, stride=2)
        names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
        names += ["maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d"]
        self.local = nn.Sequential(*[getattr(net, n) for n in names + ["Mixed_6e"]])
        self.glob = nn.Sequential(net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.local_dim, self.global_dim = 768, 2048

    def forward(self, x):
        local = self.local(F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False))
        return local, self.glob(local)


BACKBONES = {"inception_v3": InceptionBackbone, "resnet18": ResNetBackbone, "small": SmallBackbone}


class ImageEncoder(nn.Module):
    """The DAMSM image encoder (the reference's CNN_ENCODER): regions [B, R, Dw] and a code [B, D]."""

    def __init__(self, cfg: DAMSMConfig, word_dim: int, text_dim: int):
        super().__init__()
        self.backbone = BACKBONES[cfg.backbone](cfg.width)
        self.regions = nn.Conv2d(self.backbone.local_dim, word_dim, 1, bias=False)
        self.code = nn.Linear(self.backbone.global_dim, text_dim)
        nn.init.uniform_(self.regions.weight, -0.1, 0.1)  # the reference's init of its two new layers
        nn.init.uniform_(self.code.weight, -0.1, 0.1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        local, code = self.backbone(image)
        return self.regions(local).flatten(2).transpose(1, 2), self.code(code)


class DAMSM(nn.Module):
    """One DAMSM image encoder per view (the text encoder is the method's)."""

    def __init__(self, cfg: DAMSMConfig, word_dim: int, text_dim: int):
        super().__init__()
        self.frontal = ImageEncoder(cfg, word_dim, text_dim)
        self.lateral = ImageEncoder(cfg, word_dim, text_dim)


def symmetric_cross_entropy(similarity: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the batch in both directions; other cases with an identical report are not negatives."""
    eye = torch.eye(len(similarity), dtype=torch.bool, device=similarity.device)
    similarity = similarity.masked_fill(same & ~eye, torch.finfo(similarity.dtype).min)
    labels = torch.arange(len(similarity), device=similarity.device)
    return F.cross_entropy(similarity, labels) + F.cross_entropy(similarity.t(), labels)


def damsm_loss(regions, code, text: Text, cfg: DAMSMConfig) -> dict[str, torch.Tensor]:
    """The DAMSM word- and sentence-level matching losses of images (regions [B, R, Dw], code [B, D])
    against their reports, each summed over both directions (image -> text, text -> image).

    Word level (the paper's eqs. 7-11): s = e^T v, normalised over the words, attention over the regions
    with gamma1, cosine relevance of each word to its region context, score_ij = log sum_t exp(gamma2 R_t)
    over the real words of text j, scaled by gamma3. Sentence level: gamma3 cosine(code_i, report_j).
    """
    with torch.autocast(regions.device.type, enabled=False):
        regions, code = regions.float(), code.float()
        words, mask = text.words.float(), text.mask
        same = identical_reports(text.flat)
        # [B_img, B_txt, T, R]: every image's regions against every report's words.
        dots = torch.einsum("jtd,ird->ijtr", words, regions)
        s = masked_softmax(dots, mask[None, :, :, None], dim=2)  # eq. 8: over the words of each report
        alpha = torch.softmax(cfg.gamma1 * s, dim=3)  # eq. 9: over the regions
        # Cosine of each word with its region context c = sum_r alpha_r v_r (eq. 10), without building c
        # ([B, B, T, D]): <c, e> = sum_r alpha_r <v_r, e> and |c|^2 = alpha^T (V V^T) alpha.
        gram = regions @ regions.transpose(1, 2)  # [B_img, R, R]
        context_norm = (torch.einsum("ijtr,irs->ijts", alpha, gram) * alpha).sum(-1).clamp(min=0).sqrt()
        relevance = (alpha * dots).sum(-1) / (context_norm * words.norm(dim=-1)[None]).clamp(min=1e-8)
        relevance = (cfg.gamma2 * relevance).masked_fill(~mask[None], -1e4)  # [B_img, B_txt, T]
        word_sim = cfg.gamma3 * torch.logsumexp(relevance, dim=2)  # [B_img, B_txt]
        sentence_sim = cfg.gamma3 * F.cosine_similarity(code[:, None], text.report.float()[None], dim=-1, eps=1e-8)
        words_loss, sentence_loss = symmetric_cross_entropy(word_sim, same), symmetric_cross_entropy(sentence_sim, same)
        return {"words": words_loss, "sentence": sentence_loss}


def encode_text(encoder: TextEncoder, tokens: TokenBatch) -> Text:
    out = encoder(tokens)
    words, mask = compact_words(out.words, out.word_mask)
    return Text(out.report, words, mask, tokens.flat)


def damsm_batch_loss(damsm: DAMSM, text: Text, images: torch.Tensor, cfg: DAMSMConfig) -> dict[str, torch.Tensor]:
    """Both views' DAMSM losses for real or generated images [B, 2, H, W] in [-1, 1]."""
    losses = {"words": 0.0, "sentence": 0.0}
    for v, view in enumerate(VIEWS):
        for key, value in damsm_loss(*getattr(damsm, view)(images[:, v : v + 1]), text, cfg).items():
            losses[key] = losses[key] + value
    return losses


def pretrain_damsm(
    encoder: TextEncoder,
    damsm: DAMSM,
    tokens: Tokens,
    images: torch.Tensor,
    cfg: DAMSMConfig,
    *,
    seed: int,
    precision: MethodConfig | None = None,
    log=None,
) -> list[float]:
    """Train the text encoder and both image encoders with the DAMSM losses (the reference's
    ``pretrain_DAMSM.py``); returns each epoch's mean loss. ``images``: uint8 [N, 2, H, W] on the device.

    Each epoch: a seeded permutation in full batches (the reference drops the last partial one), a new Adam
    at the epoch's lr (lr x lr_decay after every epoch while lr > lr0 / 10), text-encoder gradient norm
    clipped. Deterministic for a seed on the CPU. Leaves both networks in training mode.
    """
    device = images.device
    n = len(images)
    if n < 2:
        raise ValueError(f"DAMSM pretraining needs at least 2 cases, not {n}")
    all_tokens = TokenBatch.of(tokens, device)
    gen = torch.Generator().manual_seed(seed)
    encoder.train().requires_grad_(True)
    damsm.train().requires_grad_(True)
    params = list(encoder.parameters()) + list(damsm.parameters())
    lr, history = cfg.lr, []
    batch_size = min(cfg.batch_size, n)
    for epoch in range(cfg.epochs):
        opt = torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas))
        perm = torch.randperm(n, generator=gen)
        total, steps = torch.zeros((), device=device), 0
        for start in range(0, n - batch_size + 1, batch_size):
            index = perm[start : start + batch_size].to(device)
            with autocast(device, precision):
                text = encode_text(encoder, all_tokens[index])
                losses = damsm_batch_loss(damsm, text, to_unit_range(images[index]), cfg)
                loss = losses["words"] + losses["sentence"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(encoder.parameters(), cfg.grad_clip)
            opt.step()
            total += loss.detach()
            steps += 1
        history.append(float(total) / steps)
        if log is not None:
            log(epoch, history[-1], lr)
        if lr > cfg.lr / 10:
            lr *= cfg.lr_decay
    return history
