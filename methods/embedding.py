"""The pretrained report embedding: the shared text encoder trained once to match reports with their image
pairs, then frozen, for the methods whose papers condition on a fixed, pretrained text embedding.

Papers: GAN-INT-CLS (Reed et al., ICML 2016) and StackGAN (Zhang et al., ICCV 2017) both condition on Reed's
char-CNN-RNN embedding, pretrained with the deep symmetric structured joint embedding (DS-SJE: Reed, Akata,
Lee, Schiele, "Learning Deep Representations of Fine-Grained Visual Descriptions", CVPR 2016) and kept fixed
while the GAN trains. Here the text encoder is the method's own (the shared HAE at the run's config), so the
embedding is pretrained per (train split, image size, seed, encoder config, the settings below) and cached.
Written from the papers; no code is copied.

- Text side: the encoder's report vector is the embedding (no projection head): what the GAN reads is what
  the matching objective trained.
- Image side: a small CNN per view (four conv4x4 stride-2 + LeakyReLU 0.2, channels ``width`` doubling,
  global average pool), the two views' codes concatenated and projected linearly to the report size. DS-SJE
  used a fixed GoogLeNet; nothing pretrained can be downloaded here, so the image encoder trains from random
  weights beside the text encoder, and is dropped afterwards.
- Objective: symmetric over the batch, report -> image and image -> report, as DS-SJE. DS-SJE's structured
  hinge loss runs over the classes of the birds data; reports have no classes, every case is its own, and
  the softmax form (InfoNCE: cross-entropy of cosine similarity / ``temperature``, both directions) replaces
  the hinge. Cases of a batch whose reports are token for token identical (normal studies often are) are not
  negatives of each other.
- Optimisation: Adam, a seeded permutation per epoch in full batches (the last partial batch is dropped, so
  ``pairs_seen`` counts only what was trained on).
- Cache: ``$XBENCH_CACHE_DIR/report_embedding/<key>.npz`` (``benchmark.core.cache``: atomic write, computed
  once across processes), with the trained text and image encoders. The key hashes the train split's content
  (case ids, report tokens, pixels), the image size, the seed, the encoder name and config, the vocabulary size
  and ``EmbeddingConfig``.
- Quality: report-to-image retrieval on held-out (val) pairs, in ``retrieval`` (R@1, R@5, median rank and
  their chance levels), kept in the run's ``fit_summary["embedding"]``.
"""

import dataclasses
import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core import cache
from benchmark.core.distributed import barrier, world
from benchmark.core.resize import resident_images
from benchmark.core.seeds import derive_seed
from benchmark.core.validation import check_ranges
from benchmark.data.images import to_unit_range
from methods.base import PairedData, TextEncoder, TokenBatch
from methods.damsm import identical_reports, symmetric_cross_entropy
from methods.text_encoders import get_text_encoder

CACHE_KIND = "report_embedding"
TEXT_EMBEDDINGS = ("pretrained", "trained_jointly")  # the methods' ``text_embedding`` choices


@dataclasses.dataclass(frozen=True)
class EmbeddingConfig:
    """The embedding's pretraining (a method's ``embedding`` field; used when ``text_embedding = "pretrained"``)."""

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3  # Adam
    temperature: float = 0.1  # cosine similarities are divided by it before the softmax
    width: int = 32  # channels of the image encoder's first conv

    def __post_init__(self):
        check_ranges(self)
        if self.temperature <= 0:
            raise ValueError(f"embedding.temperature must be > 0, not {self.temperature}")


def check_text_embedding(method: str, value: str) -> None:
    if value not in TEXT_EMBEDDINGS:
        raise ValueError(f"{method}: text_embedding must be 'pretrained' or 'trained_jointly', not {value!r}")


class PairImageEncoder(nn.Module):
    """A frontal + lateral pair [B, 2, H, W] in [-1, 1] -> a code [B, out_dim] (one small CNN per view)."""

    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.frontal, self.lateral = self._view(width), self._view(width)
        self.project = nn.Linear(2 * 8 * width, out_dim)

    @staticmethod
    def _view(width: int) -> nn.Sequential:
        layers, c = [], 1
        for k in range(4):
            layers += [nn.Conv2d(c, width * 2**k, 4, 2, 1), nn.LeakyReLU(0.2)]
            c = width * 2**k
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([self.frontal(pair[:, :1]), self.lateral(pair[:, 1:])], dim=1))


def similarity(report: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """[N_reports, N_images] cosine similarities."""
    return F.normalize(report.float(), dim=-1) @ F.normalize(image.float(), dim=-1).t()


def matching_loss(report: torch.Tensor, image: torch.Tensor, flat: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: cross-entropy over the batch, report -> image and image -> report."""
    return symmetric_cross_entropy(similarity(report, image) / temperature, identical_reports(flat))


def pairs_seen(cfg: EmbeddingConfig, n_train: int) -> int:
    """Cases (a report with both views) the pretraining trains on: full batches only."""
    batch = min(cfg.batch_size, n_train)
    return cfg.epochs * (n_train // batch) * batch


def embedding_budget(cfg: EmbeddingConfig, n_train: int) -> dict:
    """The pretraining's share of a run's budget (``budget["pretraining"]["embedding"]``)."""
    return {"pairs_seen": pairs_seen(cfg, n_train), "epochs": cfg.epochs}


def pretrain(
    encoder: TextEncoder, images: PairImageEncoder, train: PairedData, size: int, cfg: EmbeddingConfig, *, seed: int
) -> list[float]:
    """Train ``encoder`` and ``images`` with the matching loss on ``train`` at ``size`` px; each epoch's mean loss."""
    device = next(encoder.parameters()).device
    n = len(train)
    if n < 2:
        raise ValueError(f"embedding pretraining needs at least 2 cases, not {n}")
    tokens = TokenBatch.of(train.tokens, device)
    pixels = resident_images(train.pixels, size, device)
    params = list(encoder.parameters()) + list(images.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    batch = min(cfg.batch_size, n)
    encoder.train().requires_grad_(True)
    images.train().requires_grad_(True)
    history = []
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, n - batch + 1, batch):
            index = order[start : start + batch]
            text = tokens[index]
            loss = matching_loss(encoder(text).report, images(to_unit_range(pixels[index])), text.flat, cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        history.append(float(total) / (n // batch))
    return history


@torch.no_grad()
def retrieval(encoder: TextEncoder, images: PairImageEncoder, data: PairedData, size: int) -> dict:
    """Report-to-image retrieval over the pairs of ``data`` (``retrieval_scores`` of their cosine similarities)."""
    device = next(encoder.parameters()).device
    was = encoder.training, images.training
    encoder.eval(), images.eval()
    tokens = TokenBatch.of(data.tokens, device)
    pixels = resident_images(data.pixels, size, device)
    reports, codes = [], []
    for start in range(0, len(data), 256):
        reports.append(encoder(tokens[start : start + 256]).report)
        codes.append(images(to_unit_range(pixels[start : start + 256])))
    encoder.train(was[0]), images.train(was[1])
    return retrieval_scores(similarity(torch.cat(reports), torch.cat(codes)), tokens.flat)


def retrieval_scores(sim: torch.Tensor, flat: torch.Tensor) -> dict:
    """R@1, R@5 and the median rank of each report's own image among all images (``sim`` [N reports,
    N images]), and their chance levels. A case whose report is token for token identical to another's
    (``flat`` [N, T]) counts that image as correct too (the report cannot tell them apart); its rank is that
    of its best-ranked correct image. Chance: a random ranking with the same numbers of correct images."""
    sim = sim.detach().cpu().double()
    correct = identical_reports(flat).cpu()  # [N, N]
    best_correct = sim.masked_fill(~correct, -np.inf).amax(dim=1, keepdim=True)
    ranks = 1 + ((sim > best_correct) & ~correct).sum(dim=1)  # [N]
    n, m = len(sim), correct.sum(dim=1).double()

    def chance_at(k: int) -> float:  # P(a correct one among the top k) = 1 - C(n - m, k) / C(n, k), averaged
        miss = torch.ones_like(m)
        for i in range(k):
            miss *= ((n - m - i) / (n - i)).clamp(min=0)
        return float((1 - miss).mean())

    return {
        "n": n,
        "r_at_1": float((ranks <= 1).double().mean()),
        "r_at_5": float((ranks <= 5).double().mean()),
        "median_rank": float(np.median(ranks.numpy())),
        "chance_r_at_1": chance_at(1),
        "chance_r_at_5": chance_at(5),
        "chance_median_rank": float(np.median(((n + 1) / (m + 1)).numpy())),  # expected best rank of m among n
    }


def _train_digest(train: PairedData) -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(train.case_ids).encode())
    for array in (train.tokens.findings, train.tokens.impression, train.tokens.flat, train.pixels):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def cache_key(
    encoder_name: str, text: TextEncoder.Config, vocab_size: int, cfg: EmbeddingConfig, train, size: int, seed: int
) -> str:
    return cache.content_key(
        {
            "kind": CACHE_KIND,
            "version": 1,  # bump when the objective or the image encoder changes
            "train": _train_digest(train),
            "image_size": size,
            "seed": seed,
            "encoder": encoder_name,
            "text": dataclasses.asdict(text),
            "vocab_size": vocab_size,
            "embedding": dataclasses.asdict(cfg),
        }
    )


def _modules(encoder_name, text, vocab_size, cfg, seed, device) -> tuple[TextEncoder, PairImageEncoder]:
    with torch.random.fork_rng(devices=[]):  # its own init, whatever the method drew before
        torch.manual_seed(derive_seed(seed, "embedding", "init"))
        encoder = get_text_encoder(encoder_name, text, vocab_size)
        images = PairImageEncoder(cfg.width, text.out_dim)
    return encoder.to(device), images.to(device)


def _arrays(encoder: nn.Module, images: nn.Module) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.{name}": tensor.detach().cpu().numpy()
        for prefix, module in (("text", encoder), ("image", images))
        for name, tensor in module.state_dict().items()
    }


def _load(module: nn.Module, arrays: dict[str, np.ndarray], prefix: str) -> None:
    start = len(prefix) + 1
    module.load_state_dict({k[start:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(prefix + ".")})


def load_pretrained(
    encoder: TextEncoder,
    encoder_name: str,
    cfg: EmbeddingConfig,
    train: PairedData,
    val: PairedData | None,
    *,
    size: int,
    seed: int,
) -> dict:
    """Pretrain the embedding on ``train`` (or take it from the cache), load it into ``encoder`` and freeze
    it. Returns what the run reports: the cache key, the pretraining's budget and, with ``val``, the
    retrieval on the held-out pairs. Every process takes the saved copy (GPU kernels need not be bitwise
    deterministic, and every rank must condition on the same embedding)."""
    device = next(encoder.parameters()).device
    key = cache_key(encoder_name, encoder.cfg, encoder.vocab_size, cfg, train, size, seed)
    text, images = _modules(encoder_name, encoder.cfg, encoder.vocab_size, cfg, seed, device)

    def pretrained() -> dict[str, np.ndarray]:
        pretrain(text, images, train, size, cfg, seed=derive_seed(seed, "embedding"))
        return _arrays(text, images)

    # One pretraining per key: the main rank computes it under the cache's lock (runs side by side share it),
    # the other ranks read what it saved.
    arrays = cache.load_or_compute(CACHE_KIND, key, pretrained) if world().is_main else None
    barrier()
    if arrays is None:
        arrays = cache.load(CACHE_KIND, key)
        if arrays is None:
            raise RuntimeError(f"the report embedding {key} was not written to {cache.cache_root() / CACHE_KIND}")
    _load(text, arrays, "text")
    _load(images, arrays, "image")
    encoder.load_state_dict(text.state_dict())
    freeze(encoder)
    summary = {"cache_key": key, **embedding_budget(cfg, len(train))}
    if val is not None and len(val) >= 2:
        summary["val_retrieval"] = retrieval(encoder, images, val, size)
    return summary


def freeze(encoder: nn.Module) -> nn.Module:
    """Fixed, as the papers keep their embedding: eval mode, no gradient (so no optimiser updates it)."""
    return encoder.eval().requires_grad_(False)


class FixedEmbedding:
    """What a method whose paper conditions on a fixed, pretrained report embedding adds to ``StagedMethod``
    (GAN-INT-CLS, StackGAN): with ``cfg.text_embedding == "pretrained"`` its ``generators.encoder`` is
    pretrained (or taken from the cache) before the fit and stays frozen through it, and the budget counts
    the pretraining. Listed before ``StagedMethod`` among the bases; call ``_freeze_embedding`` at the end
    of ``__init__``."""

    def _freeze_embedding(self) -> None:
        if self.cfg.text_embedding == "pretrained":
            freeze(self.generators.encoder)

    def fit(self, train: PairedData, val: PairedData | None, run_dir, *, resume: bool = False) -> None:
        cfg = self.cfg
        if cfg.text_embedding == "pretrained":
            self.fit_summary["embedding"] = load_pretrained(
                self.generators.encoder, cfg.encoder, cfg.embedding, train, val, size=self.image_size, seed=self.seed
            )
        super().fit(train, val, run_dir, resume=resume)
        self.generators.requires_grad_(True)  # as a caller finds a fitted method: trainable, but for the embedding
        self.generators.train()
        self._freeze_embedding()

    def budget(self, n_train: int) -> dict:
        """``StagedMethod.budget``, plus the embedding's pretraining when it is pretrained."""
        out = super().budget(n_train)
        if self.cfg.text_embedding == "pretrained":
            out["pretraining"] = {"embedding": embedding_budget(self.cfg.embedding, n_train)}
        return out
