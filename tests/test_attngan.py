"""AttnGAN: the original's shapes and parameter counts, masked word attention, the DAMSM (pretraining that
learns, its term in the generator loss), the xraygan_protocol variant, determinism, reload and resume."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from benchmark.core.checkpoints import load_checkpoint
from benchmark.core.resize import resident_images
from benchmark.data.images import to_unit_range
from benchmark.data.text import Vocab
from methods.attngan import VARIANTS, AttnGAN, Config
from methods.attngan_networks import AttnGenerator, Discriminators, WordAttention
from methods.base import TokenBatch
from methods.damsm import DAMSM, Text, damsm_batch_loss, damsm_loss, encode_text, pretrain_damsm
from methods.text_encoders import get_text_encoder
from tests.tiny import tiny_model


def tiny(**changes) -> Config:
    """The tiny setting, shortened further for tests (one GAN epoch, one DAMSM epoch)."""
    base = tiny_model("attngan")
    damsm = dataclasses.replace(base.damsm, epochs=1, batch_size=16)
    return dataclasses.replace(base, **{"epochs": 1, "batch_size": 16, "damsm": damsm, **changes})


def protocol(**changes) -> Config:
    return tiny(**{**VARIANTS["xraygan_protocol"], "epochs": 1, "condition_dim": 16, **changes})


def gan_records(run_dir) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if r["phase"] == "gan"]


def test_parameter_counts_at_the_paper_setting():
    """The original's layers (1-channel images, the HAE's 512-d report vector and 256-d words)."""
    vocab = Vocab(("<pad>", "<unk>", "<sep>") + tuple(f"w{i}" for i in range(1557)), 13, 34, 180)  # Open-i size
    counts = AttnGAN(Config(), vocab, image_size=256, device="cpu").parameter_counts()
    print(counts)
    conv3, conv4 = 9, 16  # weights per in/out channel pair
    up = [c * c * conv3 + 2 * c for c in (512, 256, 128, 64)]  # nearest x2, conv -> 2 out, BN, GLU
    res = (64 * 128 + 64 * 64) * conv3 + 2 * 128 + 2 * 64  # GLU residual block on 2 gf = 64 channels
    assert counts["text encoder"] == 1_845_248 + 2 * 1560 * 128  # the HAE, as XRayGAN's
    assert counts["G_f conditioning augmentation"] == 512 * 400 + 400 == 205_200
    assert counts["G_f initial stage (64px)"] == 200 * 16384 + 2 * 16384 + sum(up) == 6_444_928
    assert counts["G_f attention stage 1 (128px)"] == 256 * 32 + 2 * res + up[-1] == 267_136
    assert counts["G_f attention stage 2 (256px)"] == 267_136
    assert counts["G_f total"] == counts["G_l (same as G_f)"] == 205_200 + 6_444_928 + 2 * 267_136 + 3 * 32 * conv3
    trunk = 64 * conv4 + sum(a * b * conv4 + 2 * b for a, b in ((64, 128), (128, 256), (256, 512)))
    heads = (512 * conv4 + 1) + (1024 * 512 * conv3 + 2 * 512) + (512 * conv4 + 1)  # uncond + cond (+ 512-d c)
    assert counts["D 64px, per view"] == trunk + heads == 7_491_330
    extra128 = 512 * 1024 * conv4 + 2 * 1024 + 1024 * 512 * conv3 + 2 * 512
    assert counts["D 128px, per view"] == trunk + heads + extra128 == 20_601_602
    assert counts["D 256px, per view"] == 73_036_546
    assert counts["DAMSM image encoder (inception_v3), per view"] == 23_030_688  # 1-channel Inception-v3 + 2 heads


def test_word_attention_weights_sum_to_one_over_real_tokens():
    torch.manual_seed(0)
    attention = WordAttention(channels=8, word_dim=6)
    mask = torch.tensor([[1, 0, 1, 1, 0, 0, 1], [0, 0, 1, 0, 0, 0, 0], [0] * 7], dtype=torch.bool)  # pads inside
    words = torch.randn(3, 7, 6) * 10
    context, weights = attention(torch.randn(3, 8, 4, 4), words, mask)
    assert weights.shape == (3, 16, 7) and context.shape == (3, 8, 4, 4)
    torch.testing.assert_close(weights[:2].sum(-1), torch.ones(2, 16))
    assert (weights[~mask[:, None, :].expand_as(weights)] == 0).all()  # exactly zero on padding
    assert (weights[2] == 0).all() and (context[2] == 0).all()  # no word at all: zeros, not NaN
    # Words at padded positions do not matter at all.
    garbage = torch.where(mask[..., None], words, torch.randn(3, 7, 6) * 100)
    torch.testing.assert_close(
        attention(torch.ones(3, 8, 4, 4), garbage, mask)[0], attention(torch.ones(3, 8, 4, 4), words, mask)[0]
    )


def test_word_attention_is_not_uniform_pooling():
    """Masking each pixel's most attended word moves its context much more than masking its least attended
    one; uniform pooling over the words passes the sum-to-one test and fails this one."""
    from tests.test_text_encoders import masking_effect

    torch.manual_seed(0)
    attention = WordAttention(channels=8, word_dim=6)
    words, mask = torch.randn(64, 9, 6) * 3, torch.rand(64, 9) < 0.8
    query = torch.randn(64, 8, 1, 1)  # one pixel per row: its weights over the words are the row's

    def attend(w, m):
        return attention(query, w, m)[0].flatten(1)

    weights = attention(query, words, mask)[1][:, 0]
    attended, unattended = masking_effect(attend, words, mask, weights)
    print(f"AttnGAN: masking the most attended word moves the context {attended:.4f}, the least {unattended:.4f}")
    assert attended > 3 * unattended, (attended, unattended)


def test_generator_stages_attend_to_the_hae_words(tiny_phantom):
    vocab, train, _ = tiny_phantom
    cfg = tiny_model("attngan")
    encoder = get_text_encoder("hae", cfg.text, len(vocab))
    text = encode_text(encoder, TokenBatch.of(train.tokens[:4]))
    assert text.words.shape[1] == int(text.mask.sum(1).max())  # compacted: no all-padding column
    assert text.words.shape[1] < encoder(TokenBatch.of(train.tokens[:4])).words.shape[1]
    g = AttnGenerator(cfg, cfg.text.out_dim, encoder.word_dim).eval()
    out = g(text.report, text.words, text.mask, torch.randn(4, cfg.z_dim), torch.randn(4, cfg.condition_dim))
    assert [tuple(x.shape) for x in out.images] == [(4, 1, 32, 32), (4, 1, 64, 64)]
    (weights,) = out.attention  # one attention stage: at 32 px, over the words
    assert weights.shape == (4, 32 * 32, text.words.shape[1])
    real = text.mask[:, None, :].expand_as(weights)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 32 * 32))
    assert (weights[~real] == 0).all()


def test_damsm_pretraining_lowers_its_loss_on_the_train_split(tiny_phantom):
    vocab, train, _ = tiny_phantom
    train = train.subset(np.arange(64))
    cfg = tiny_model("attngan")
    damsm_cfg = dataclasses.replace(cfg.damsm, epochs=4, batch_size=32)
    torch.manual_seed(0)
    encoder = get_text_encoder("hae", cfg.text, len(vocab))
    damsm = DAMSM(damsm_cfg, encoder.word_dim, cfg.text.out_dim)
    images = resident_images(train.pixels, 64, "cpu")
    tokens = TokenBatch.of(train.tokens)

    @torch.no_grad()
    def train_loss() -> float:  # eval mode, the same two batches of 32
        damsm.eval()
        total = 0.0
        for index in (torch.arange(32), torch.arange(32, 64)):
            losses = damsm_batch_loss(
                damsm, encode_text(encoder, tokens[index]), to_unit_range(images[index]), damsm_cfg
            )
            total += float(losses["words"] + losses["sentence"])
        return total / 2

    before = train_loss()
    history = pretrain_damsm(encoder, damsm, train.tokens, images, damsm_cfg, seed=0)
    after = train_loss()
    assert len(history) == 4 and history[-1] < history[0], history
    # Measured 43.8 -> 34.1 (CPU, seed 0). A random DAMSM starts above chance (8 log 32 = 27.7: four cross-
    # entropies per view); longer pretraining goes below chance (20.9 < 8 log 16 = 22.2 after 6 epochs on
    # 512 cases at batch 16).
    assert after < 0.9 * before, (before, after)


def test_identical_reports_are_not_negatives():
    """Two cases with the same report: neither copy is a negative for the other's image.

    Unmasked, the duplicate is a negative exactly as similar as the positive, which adds log 2-like terms
    to both cases' cross-entropy; masked, the loss equals that of reports that merely look alike to the
    encoder but differ token for token (so are true negatives) minus that penalty. Swapping the two images
    leaves the masked loss unchanged."""
    torch.manual_seed(0)
    cfg = tiny_model("attngan").damsm
    flat = torch.tensor([[5, 6, 7], [5, 6, 7], [8, 9, 0]])
    words, mask = torch.randn(3, 4, 8), torch.tensor([[1, 1, 1, 0]] * 3, dtype=torch.bool)
    words[1] = words[0]
    report = torch.randn(3, 16)
    report[1] = report[0]
    # Each image matches its own report closely (regions hold its words, the code is its report vector).
    regions, code = torch.cat([words, torch.randn(3, 1, 8)], dim=1), report.clone()
    loss = damsm_loss(regions, code, Text(report, words, mask, flat), cfg)
    # The same features under reports that differ token for token: the duplicate counts as a negative.
    distinct = damsm_loss(
        regions, code, Text(report, words, mask, torch.tensor([[5, 6, 7], [5, 6, 4], [8, 9, 0]])), cfg
    )
    for key in loss:
        assert loss[key] < distinct[key] - 0.1, (key, float(loss[key]), float(distinct[key]))
    swapped = damsm_loss(regions[[1, 0, 2]], code[[1, 0, 2]], Text(report, words, mask, flat), cfg)
    for key in loss:
        torch.testing.assert_close(loss[key], swapped[key])


def test_the_xraygan_protocol_critics_have_no_batch_norm():
    """WGAN-GP's per-sample penalty is wrong under batch statistics: refused, and the variant's critics
    use instance norm."""
    with pytest.raises(ValueError, match="wgan_gp' needs d_norm 'instance'"):
        Config(loss="wgan_gp")
    d = Discriminators(protocol(), 64)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in Discriminators(tiny(), 64).modules())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_damsm_term_in_the_faithful_generator_loss_and_l2_in_xraygan_protocol(variant, tiny_phantom, tmp_path):
    vocab, train, _ = tiny_phantom
    cfg = tiny() if variant == "faithful" else protocol()
    method = AttnGAN(cfg, vocab, image_size=64, device="cpu", seed=1)
    encoder_before = {k: v.clone() for k, v in method.nets.encoder.state_dict().items()}
    method.fit(train.subset(np.arange(32)), None, tmp_path)
    (record,) = [r for r in gan_records(tmp_path) if r["step"] == 2]  # the last step of 32 cases in 16s
    encoder_after = method.nets.encoder.state_dict()
    if variant == "faithful":
        assert {"damsm_words", "damsm_sentence", "kl"} <= set(record) and "l2" not in record
        expected = record["adv"] + record["kl"] + 5.0 * (record["damsm_words"] + record["damsm_sentence"])
        cache = load_checkpoint(tmp_path / "damsm" / "damsm.pt")  # sha256-checked
        assert all(torch.equal(cache["text_encoder"][k], encoder_after[k]) for k in encoder_after)
        assert any(not torch.equal(encoder_before[k], encoder_after[k]) for k in encoder_after)  # DAMSM trained it
        assert any(
            r.get("phase") == "damsm" for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines())
        )
    else:
        assert "l2" in record and not {"damsm_words", "damsm_sentence", "kl"} & set(record)
        expected = record["adv"] + 100.0 * record["l2"]
        assert not (tmp_path / "damsm").exists()
        assert all(torch.equal(encoder_before[k], encoder_after[k]) for k in encoder_after)  # frozen random
        assert method.cfg.loss == "wgan_gp" and not method.cfg.d_condition and method.cfg.z_dim == 0
    assert record["generator"] == pytest.approx(expected, rel=1e-4, abs=1e-4)  # the log rounds to 6 decimals


@pytest.fixture(scope="module")
def fitted(tiny_phantom, tmp_path_factory):
    """Two fits with the same seed (for determinism), one of them used for the generation tests."""
    vocab, train, _ = tiny_phantom
    train = train.subset(np.arange(32))
    runs = []
    for name in ("a", "b"):
        method = AttnGAN(tiny(), vocab, image_size=64, device="cpu", seed=3)
        method.fit(train, None, tmp_path_factory.mktemp(f"attngan-{name}"))
        runs.append(method)
    return runs


def test_same_seed_same_weights(fitted):
    a, b = (m.state_dict()["networks"] for m in fitted)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_generate_shapes_range_and_seeds(fitted, tiny_phantom):
    method = fitted[0]
    _, _, test = tiny_phantom
    tokens = test.tokens[:6]
    views = method.generate(tokens, seeds=[1, 2, 3, 4, 5, 6])
    for x in (views.frontal, views.lateral):
        assert x.shape == (6, 1, 64, 64) and x.dtype == torch.float32 and x.device.type == "cpu"
        assert x.min() >= -1 and x.max() <= 1
    again = method.generate(tokens, seeds=[1, 2, 3, 4, 5, 6])
    assert torch.equal(views.frontal, again.frontal) and torch.equal(views.lateral, again.lateral)
    other = method.generate(tokens, seeds=[7, 8, 9, 10, 11, 12])
    assert not torch.allclose(views.frontal, other.frontal) and not torch.allclose(views.lateral, other.lateral)
    # Per-case noise: a case's images do not depend on the rest of the batch.
    singles = [method.generate(tokens[i : i + 1], seeds=[i + 1]) for i in range(6)]
    torch.testing.assert_close(views.frontal, torch.cat([s.frontal for s in singles]), atol=1e-5, rtol=0)
    torch.testing.assert_close(views.lateral, torch.cat([s.lateral for s in singles]), atol=1e-5, rtol=0)


def test_state_dict_reload_generates_the_same_images(fitted, tiny_phantom):
    vocab, _, test = tiny_phantom
    method = fitted[0]
    fresh = AttnGAN(tiny(), vocab, image_size=64, device="cpu", seed=99)
    fresh.load_state_dict(method.state_dict())
    a, b = method.generate(test.tokens[:4], [0, 1, 2, 3]), fresh.generate(test.tokens[:4], [0, 1, 2, 3])
    assert torch.equal(a.frontal, b.frontal) and torch.equal(a.lateral, b.lateral)


def test_resume_after_a_kill_reuses_the_cached_damsm(tiny_phantom, tmp_path, monkeypatch):
    vocab, train, _ = tiny_phantom
    train = train.subset(np.arange(32))
    cfg = tiny(epochs=2, checkpoint_every=1)
    full = AttnGAN(cfg, vocab, image_size=64, device="cpu", seed=3)
    full.fit(train, None, tmp_path / "full")

    calls = {"n": 0}
    original = AttnGAN.train_step

    def dies_later(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # 2 steps per epoch: the first step of the second epoch
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AttnGAN, "train_step", dies_later)
    with pytest.raises(KeyboardInterrupt):
        AttnGAN(cfg, vocab, image_size=64, device="cpu", seed=3).fit(train, None, tmp_path / "killed")
    monkeypatch.setattr(AttnGAN, "train_step", original)
    monkeypatch.setattr("methods.attngan.pretrain_damsm", lambda *a, **k: pytest.fail("the DAMSM is cached"))
    resumed = AttnGAN(cfg, vocab, image_size=64, device="cpu", seed=3)
    resumed.fit(train, None, tmp_path / "killed", resume=True)
    a, b = full.state_dict()["networks"], resumed.state_dict()["networks"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
