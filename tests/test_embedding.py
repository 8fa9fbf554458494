"""The pretrained report embedding (methods/embedding.py): it learns a report-image match that holds on held-out
pairs, the retrieval figures and their chance levels, the cache, and the faithful GAN-INT-CLS and StackGAN
conditioning on it frozen (their xraygan_protocol variants train the encoder jointly)."""

import dataclasses
import multiprocessing

import numpy as np
import pytest
import torch

from benchmark.core import cache
from benchmark.data.text import Vocab
from methods import embedding
from methods.base import PairedData, TextEncoder
from methods.embedding import EmbeddingConfig, PairImageEncoder, load_pretrained, pretrain, retrieval, retrieval_scores
from methods.text_encoders import get_text_encoder
from tests.tiny import tiny_model

TEXT = TextEncoder.Config(embed_dim=16, hidden=16, out_dim=32)
FINDINGS = ["cardiomegaly", "effusion", "pneumothorax", "nodule", "atelectasis", "edema", "consolidation", "hernia"]
SIZE = 16
# Measured on the toy below (AMD EPYC, 2 loaded cores; seeds 0-4): after 6 epochs (48 steps) held-out R@5
# 0.83-0.95 (chance 0.15-0.17), R@1 0.48-0.69 (chance 0.03-0.04), median rank 1-2 (chance 21.7); with the
# pretraining cut (epochs = 0) R@5 0.09-0.13 and median rank 24-31.5. The margins below (R@5 at least chance
# + 0.4, median rank at most a quarter of chance's) sit about halfway between the two.
TOY_CFG = EmbeddingConfig(epochs=6, batch_size=32, lr=3e-3, width=4)


def toy_pairs(n: int, seed: int, vocab: Vocab | None = None) -> tuple[PairedData, Vocab]:
    """Reports that name 1-3 of eight findings; each finding draws a bright square at its own place, on the
    frontal view at one spot and on the lateral at another, over noise. Held-out pairs are new draws."""
    rng = np.random.default_rng(seed)
    texts, pixels = [], np.zeros((n, 2, SIZE, SIZE), np.uint8)
    for i in range(n):
        named = rng.choice(len(FINDINGS), size=rng.integers(1, 4), replace=False)
        texts.append((" ".join(f"There is {FINDINGS[k]}." for k in sorted(named)), "Abnormal study."))
        pixels[i] = rng.integers(0, 60, (2, SIZE, SIZE))
        for k in named:
            r, c = divmod(int(k), 4)
            pixels[i, 0, 2 + 6 * r : 6 + 6 * r, 4 * c : 4 * c + 3] = 230
            pixels[i, 1, 4 * c : 4 * c + 3, 2 + 6 * r : 6 + 6 * r] = 230
    vocab = vocab or Vocab.build(texts)
    return PairedData(tuple(f"case{seed}-{i}" for i in range(n)), vocab.encode(texts), pixels), vocab


def pretrained_toy(cfg: EmbeddingConfig, seed: int = 0) -> dict:
    train, vocab = toy_pairs(256, seed=100 + seed)
    held_out, _ = toy_pairs(64, seed=200 + seed, vocab=vocab)
    torch.manual_seed(seed)
    encoder, images = get_text_encoder("hae", TEXT, len(vocab)), PairImageEncoder(cfg.width, TEXT.out_dim)
    pretrain(encoder, images, train, SIZE, cfg, seed=seed)
    return retrieval(encoder, images, held_out, SIZE)


@pytest.fixture(autouse=True)
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


def test_pretraining_retrieves_held_out_pairs_well_above_chance():
    result = pretrained_toy(TOY_CFG)
    print({k: round(v, 3) for k, v in result.items()})
    assert result["r_at_5"] >= result["chance_r_at_5"] + 0.4, result
    assert result["median_rank"] <= result["chance_median_rank"] / 4, result


def test_retrieval_figures_and_chance_levels():
    flat = torch.tensor([[1, 2], [3, 4], [1, 2], [5, 6]])  # cases 0 and 2 share their report
    perfect = torch.eye(4)
    result = retrieval_scores(perfect, flat)
    assert result["r_at_1"] == 1.0 and result["median_rank"] == 1.0 and result["n"] == 4
    # Case 0's report ranks case 2's image first: a correct one (the same report), so still rank 1.
    swapped = perfect[[2, 1, 0, 3]]
    assert retrieval_scores(swapped, flat)["r_at_1"] == 1.0
    # Case 1's image last for its report: rank 4 of 4.
    worst = perfect.clone()
    worst[1] = torch.tensor([3.0, 0.0, 2.0, 1.0])
    assert retrieval_scores(worst, flat)["r_at_1"] == 0.75
    # Random rankings: cases 0 and 2 have 2 correct images of 4, cases 1 and 3 one.
    assert result["chance_r_at_1"] == pytest.approx((0.5 + 0.25 + 0.5 + 0.25) / 4)
    assert result["chance_median_rank"] == pytest.approx((5 / 3 + 5 / 2) / 2)


def test_the_embedding_is_cached_by_its_key_and_loaded_not_retrained(monkeypatch):
    train, vocab = toy_pairs(16, seed=1)
    cfg = EmbeddingConfig(epochs=1, batch_size=8, width=4)

    def encoder():
        return get_text_encoder("hae", TEXT, len(vocab))

    first = encoder()
    summary = load_pretrained(first, "hae", cfg, train, train, size=SIZE, seed=0)
    assert summary["pairs_seen"] == 16 and summary["epochs"] == 1 and "val_retrieval" in summary
    assert (cache.cache_root() / embedding.CACHE_KIND / f"{summary['cache_key']}.npz").is_file()
    assert not any(p.requires_grad for p in first.parameters()) and not first.training

    def no_training(*args, **kwargs):
        raise AssertionError("a cached embedding was trained again")

    monkeypatch.setattr(embedding, "pretrain", no_training)
    second = encoder()
    assert load_pretrained(second, "hae", cfg, train, None, size=SIZE, seed=0)["cache_key"] == summary["cache_key"]
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    # Every part of the key makes another entry.
    key = embedding.cache_key("hae", TEXT, len(vocab), cfg, train, SIZE, 0)
    assert key == summary["cache_key"]
    others = [
        embedding.cache_key("hae", TEXT, len(vocab), cfg, train, SIZE, 1),
        embedding.cache_key("hae", TEXT, len(vocab), cfg, train, 2 * SIZE, 0),
        embedding.cache_key("flat", TEXT, len(vocab), cfg, train, SIZE, 0),
        embedding.cache_key("hae", dataclasses.replace(TEXT, hidden=8), len(vocab), cfg, train, SIZE, 0),
        embedding.cache_key("hae", TEXT, len(vocab), dataclasses.replace(cfg, epochs=2), train, SIZE, 0),
        embedding.cache_key("hae", TEXT, len(vocab), cfg, train.subset(np.arange(15)), SIZE, 0),
    ]
    assert len({key, *others}) == 7


@pytest.mark.parametrize("name", ["gan_int_cls", "stackgan"])
def test_the_faithful_baselines_condition_on_the_frozen_pretrained_embedding(name, tiny_phantom, tmp_path):
    from methods import METHODS

    vocab, train, test = tiny_phantom
    cls = METHODS[name]
    one_epoch = {"epochs": 1, "batch_size": 8} if name == "gan_int_cls" else {"epochs": (1, 1), "batch_sizes": (8, 8)}
    runs = {}
    for variant in ("faithful", "xraygan_protocol"):
        base = tiny_model(name, **cls.variants[variant], **one_epoch)
        cfg = dataclasses.replace(base, embedding=dataclasses.replace(base.embedding, epochs=1))
        method = cls(cfg, vocab, image_size=64, device="cpu", seed=0)
        before = {k: v.clone() for k, v in method.generators.encoder.state_dict().items()}
        method.fit(train.subset(np.arange(16)), test.subset(np.arange(8)), tmp_path / variant)
        runs[variant] = (method, before)
    method, before = runs["faithful"]
    encoder = method.generators.encoder
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training
    # The pretrained weights, untouched by the GAN: the cached entry's text encoder.
    arrays = cache.load(embedding.CACHE_KIND, method.fit_summary["embedding"]["cache_key"])
    for key, value in encoder.state_dict().items():
        assert np.array_equal(value.numpy(), arrays[f"text.{key}"]), key
    assert not all(torch.equal(v, before[k]) for k, v in encoder.state_dict().items())  # not the random init
    assert method.budget(16)["pretraining"] == {"embedding": {"pairs_seen": 16, "epochs": 1}}
    assert {"r_at_1", "r_at_5", "median_rank", "chance_r_at_5"} <= method.fit_summary["embedding"][
        "val_retrieval"
    ].keys()
    # The XRayGAN authors' protocol trains the encoder with the generator, from random weights.
    jointly, before = runs["xraygan_protocol"]
    assert "pretraining" not in jointly.budget(16) and "embedding" not in jointly.fit_summary
    assert not all(torch.equal(v, before[k]) for k, v in jointly.generators.encoder.state_dict().items())


def _pretrain_in_a_process(root: str, log: str, out: str | None = None) -> str:
    import os
    import time

    os.environ["XBENCH_CACHE_DIR"] = root
    torch.set_num_threads(1)
    train, vocab = toy_pairs(16, seed=1)
    trained = embedding.pretrain

    def logged(*args, **kwargs):
        with open(log, "a") as f:
            f.write("pretrained\n")
        time.sleep(1.0)  # long enough that the other process asks while this one trains
        return trained(*args, **kwargs)

    embedding.pretrain = logged
    encoder = get_text_encoder("hae", TEXT, len(vocab))
    cfg = EmbeddingConfig(epochs=1, batch_size=8, width=4)
    key = load_pretrained(encoder, "hae", cfg, train, None, size=SIZE, seed=0)["cache_key"]
    if out is not None:
        torch.save(encoder.state_dict(), out)
    return key


def test_two_runs_side_by_side_on_a_cold_cache_pretrain_the_embedding_once(tmp_path):
    log = tmp_path / "log"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        keys = pool.starmap(_pretrain_in_a_process, [(str(tmp_path / "cache"), str(log))] * 2)
    assert keys[0] == keys[1]
    assert log.read_text().splitlines() == ["pretrained"]


def _rank_loads_the_embedding(rank: int, port: int, root: str, log: str, out: str) -> None:
    import os

    import torch.distributed as dist

    from benchmark.core.distributed import init_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank))
    init_distributed(torch.device("cpu"))
    try:
        _pretrain_in_a_process(root, log, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_under_two_ranks_only_the_main_one_pretrains_and_both_condition_on_its_copy(tmp_path):
    import torch.multiprocessing as mp

    from tests.test_distributed import _free_port

    log = tmp_path / "log"
    args = (_free_port(), str(tmp_path / "cache"), str(log), str(tmp_path))
    mp.spawn(_rank_loads_the_embedding, args=args, nprocs=2, join=True)
    assert log.read_text().splitlines() == ["pretrained"]
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
