"""GAN-INT-CLS: the paper-setting shapes and parameter counts, the matching-aware loss and the INT term, the
xraygan_protocol variant, and the method contract (shapes, range, seeds, determinism, save and reload)."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from methods.base import TokenBatch, count_parameters
from methods.gan_int_cls import (
    VARIANTS,
    Config,
    Discriminator,
    Discriminators,
    GanIntCls,
    Generators,
    discriminator_loss,
    generator_adversarial,
    mismatched,
)
from methods.layers import BaseGenerator, ResBlock
from tests.tiny import tiny_model


def tiny(**changes) -> Config:
    return dataclasses.replace(tiny_model("gan_int_cls"), **changes)


def test_parameter_counts_at_the_paper_setting(tiny_phantom):
    vocab, _, _ = tiny_phantom
    method = GanIntCls(Config(), vocab, image_size=256, device="cpu")
    counts = method.parameter_counts()
    print(counts)
    assert counts["text encoder"] == 1_845_248 + 2 * len(vocab) * 128  # the shared HAE
    # G: text 512 -> 128, [z 100, 128] -> 512, then XRayGAN's basic generator with 8 blocks.
    assert counts["G_f (256px)"] == (512 * 128 + 128) + (228 * 512 + 512) + count_parameters(BaseGenerator(512, 256))
    assert counts["G_f (256px)"] == counts["G_l (same as G_f)"] == 8_047_115
    # D at 256 px: six stride-2 convs (64 -> 128 -> 256 -> 512 -> 512 -> 512), bottleneck, text, head.
    convs = 16 * 64 + 64 + 16 * (64 * 128 + 128 * 256 + 256 * 512 + 2 * 512 * 512) + 2 * (128 + 256 + 512 + 2 * 512)
    bottleneck = 512 * 128 + 9 * 128 * 128 + 9 * 128 * 512 + 2 * (128 + 128 + 512)
    text, head = 512 * 128 + 2 * 128, 640 * 512 + 2 * 512 + 16 * 512 + 1
    assert counts["D (256px), per view"] == convs + bottleneck + text + head == 12_353_089


def test_the_generator_is_xraygans_basic_generator_with_eight_blocks_at_256():
    g = Generators(Config(), vocab_size=50, size=256).frontal
    assert sum(isinstance(m, ResBlock) for m in g.body.modules()) == 8
    assert g.body.head[0].in_channels == 2  # 512 channels halved 8 times
    z, c = torch.randn(3, 100), torch.rand(3, 512)
    out = g(z, c)
    assert out.shape == (3, 1, 256, 256) and out.abs().max() <= 1
    # The He init keeps z and the text in the output (PyTorch's default leaves it constant to ~1e-5 here).
    assert out.std(dim=0).mean() > 1e-2
    assert not torch.allclose(g(z, c + torch.rand(3, 512)), out)
    default = Generators(Config(g_init="default"), vocab_size=50, size=256).frontal
    assert default(z, c).std(dim=0).mean() < 1e-3


@pytest.mark.parametrize("d_norm", ["batch", "instance"])
def test_the_text_reaches_the_discriminator(d_norm):
    d = Discriminator(64, tiny(d_norm=d_norm, loss="wgan_gp" if d_norm == "instance" else "bce"))
    image, c = torch.rand(4, 1, 64, 64) * 2 - 1, torch.randn(4, 128)
    assert d(image, c).shape == (4,)
    assert not torch.allclose(d(image, c), d(image, c + torch.randn(4, 128)))


def test_the_matching_aware_loss_sees_mismatched_text():
    torch.manual_seed(0)
    cfg = tiny()
    ds = Discriminators(64, cfg)
    real = (torch.rand(6, 1, 64, 64) * 2 - 1, torch.rand(6, 1, 64, 64) * 2 - 1)
    fake = (torch.rand(6, 1, 64, 64) * 2 - 1, torch.rand(6, 1, 64, 64) * 2 - 1)
    c = torch.randn(6, 128)
    flat = torch.arange(1, 7)[:, None].repeat(1, 5)  # six different reports

    wrong, mask = mismatched(c, flat)
    torch.testing.assert_close(wrong, c.roll(1, 0))  # each case's text is the previous case's
    assert mask.tolist() == [1.0] * 6
    a = discriminator_loss(ds, real, fake, c, (wrong, mask), cfg)
    assert {"d", "d_real", "d_fake", "d_mismatch"} <= a.keys()
    torch.testing.assert_close(a["d"], a["d_real"] + 0.5 * a["d_fake"] + 0.5 * a["d_mismatch"])  # Reed, cls 0.5
    # Another pairing of the texts changes the mismatch term, and only it.
    b = discriminator_loss(ds, real, fake, c, (c.roll(2, 0), mask), cfg)
    assert not torch.allclose(a["d_mismatch"], b["d_mismatch"])
    torch.testing.assert_close(a["d_real"], b["d_real"])
    torch.testing.assert_close(a["d_fake"], b["d_fake"])
    # A "mismatch" with an identical report is a true match: left out.
    same = torch.ones(6, 5, dtype=torch.long)
    assert mismatched(c, same)[1].sum() == 0
    assert discriminator_loss(ds, real, fake, c, mismatched(c, same), cfg)["d_mismatch"] == 0
    # cls_weight 0: no mismatch term at all.
    assert "d_mismatch" not in discriminator_loss(ds, real, fake, c, (wrong, mask), tiny(cls_weight=0.0))


def test_the_int_term_uses_interpolated_embeddings(tiny_phantom):
    vocab, train, _ = tiny_phantom
    torch.manual_seed(0)
    cfg = tiny()
    g = Generators(cfg, len(vocab), 64)
    tokens = TokenBatch.of(train.tokens[:6])
    z = torch.randn(9, cfg.z_dim)  # 6 cases + 3 interpolations
    fake_f, fake_l, conds = g(tokens.findings, tokens.impression, tokens.flat, z, True)
    assert fake_f.shape == fake_l.shape == (9, 1, 64, 64) and conds.shape == (9, 128)
    torch.testing.assert_close(conds[6:], (conds[:3] + conds[3:6]) / 2)  # midpoints between the batch halves
    torch.testing.assert_close(fake_f[6:], g.frontal(z[6:], conds[6:]))

    ds = Discriminators(64, cfg)
    full = generator_adversarial(ds, (fake_f, fake_l), conds, 6, cfg)
    assert {"adv_total", "adv", "int"} <= full.keys()
    # Reed: the mean over all 1.5 B fakes, weight 1 on the interpolated ones.
    torch.testing.assert_close(full["adv_total"], (6 * full["adv"] + 3 * full["int"]) / 9)
    half = generator_adversarial(ds, (fake_f, fake_l), conds, 6, tiny(interp_weight=0.5))
    torch.testing.assert_close(half["adv_total"], (6 * full["adv"] + 1.5 * full["int"]) / 9)


@pytest.fixture(scope="module")
def trained(tiny_phantom, tmp_path_factory):
    vocab, train, _ = tiny_phantom
    method = GanIntCls(tiny(epochs=1, batch_size=16), vocab, image_size=64, device="cpu", seed=0)
    method.fit(train.subset(np.arange(32)), None, tmp_path_factory.mktemp("gan-int-cls"))
    return method


def test_generate_gives_both_views_in_range_and_follows_the_seeds(trained, tiny_phantom):
    _, _, test = tiny_phantom
    tokens = test.tokens[:5]
    views = trained.generate(tokens, seeds=[0, 1, 2, 3, 4])
    for x in (views.frontal, views.lateral):
        assert x.shape == (5, 1, 64, 64) and x.dtype == torch.float32 and x.device.type == "cpu"
        assert x.min() >= -1 and x.max() <= 1
    again = trained.generate(tokens, seeds=[0, 1, 2, 3, 4])
    assert torch.equal(again.frontal, views.frontal) and torch.equal(again.lateral, views.lateral)
    other = trained.generate(tokens, seeds=[5, 6, 7, 8, 9])
    assert not torch.allclose(other.frontal, views.frontal) and not torch.allclose(other.lateral, views.lateral)
    # A case's images do not depend on the batch it is generated in (the noise is drawn per case).
    singles = [trained.generate(tokens[i : i + 1], seeds=[i]) for i in range(5)]
    torch.testing.assert_close(torch.cat([s.frontal for s in singles]), views.frontal, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat([s.lateral for s in singles]), views.lateral, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="5 reports but 2 seeds"):
        trained.generate(tokens, seeds=[0, 1])


def test_same_seed_same_weights_and_a_saved_state_generates_the_same(tiny_phantom, tmp_path):
    vocab, train, test = tiny_phantom
    train = train.subset(np.arange(16))
    cfg = tiny(epochs=1, batch_size=8)
    runs = []
    for name in ("a", "b"):
        method = GanIntCls(cfg, vocab, image_size=64, device="cpu", seed=3)
        method.fit(train, None, tmp_path / name)
        runs.append(method)
    a, b = (m.state_dict()["generators"] for m in runs)
    for key in a:
        assert torch.equal(a[key], b[key]), key

    torch.save(runs[0].state_dict(), tmp_path / "state.pt")
    fresh = GanIntCls(cfg, vocab, image_size=64, device="cpu", seed=99)
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    before, after = runs[0].generate(test.tokens[:4], range(4)), fresh.generate(test.tokens[:4], range(4))
    assert torch.equal(before.frontal, after.frontal) and torch.equal(before.lateral, after.lateral)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_xraygan_protocol_variant_turns_cls_and_int_off_and_adds_l2(variant, tiny_phantom, tmp_path):
    vocab, train, _ = tiny_phantom
    cfg = tiny(epochs=1, batch_size=8, log_every=1, **VARIANTS[variant])
    GanIntCls(cfg, vocab, image_size=64, device="cpu").fit(train.subset(np.arange(16)), None, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    keys = set().union(*records)
    if variant == "faithful":
        assert {"d_mismatch", "int", "adv"} <= keys and not {"l2", "gp"} & keys
    else:
        assert {"l2", "gp", "adv"} <= keys and not {"d_mismatch", "int"} & keys
    assert all(np.isfinite(r["generator"]) for r in records)


def test_config_checks():
    with pytest.raises(ValueError, match="wgan_gp' needs d_norm 'instance'"):
        Config(loss="wgan_gp")
    with pytest.raises(ValueError, match="set l2_weight > 0"):
        Config(warmup_epochs=2)
    with pytest.raises(ValueError, match="power of two"):
        GanIntCls(tiny(), vocab=None, image_size=48, device="cpu")


def test_a_last_batch_of_one_trains(tiny_phantom, tmp_path):
    """D's text branch has batch norm: a train size of batch size + 1 leaves a batch of one."""
    vocab, train, _ = tiny_phantom
    GanIntCls(tiny(epochs=1, batch_size=8), vocab, image_size=64, device="cpu").fit(
        train.subset(np.arange(9)), None, tmp_path
    )
