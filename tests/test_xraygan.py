"""XRayGAN: the paper's shapes and parameter counts, a conditional critic, training that learns the report,
determinism, resume, divergence and checkpoint safety."""

import argparse
import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch

from benchmark.core.checkpoints import load_checkpoint
from benchmark.core.errors import XbenchError
from methods import METHODS, get_method
from methods.base import TokenBatch, count_parameters
from methods.training import TrainingDiverged
from methods.xraygan import VARIANTS, Config, Critic, Generators, ProgressiveGenerator, XRayGAN
from tests.tiny import tiny_model


def tiny(**changes) -> Config:
    return dataclasses.replace(tiny_model("xraygan"), **changes)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(XbenchError, match="unknown method 'gan'; choose one of: " + ", ".join(sorted(METHODS))):
        get_method("gan")
    assert METHODS["xraygan"] is XRayGAN


def test_parameter_counts_match_the_reference_at_the_paper_setting():
    cfg = Config()
    g = Generators(cfg, vocab_size=1000)
    assert count_parameters(g.frontal.base) == 7_856_657
    assert [count_parameters(s) for s in g.frontal.stages] == [1_803_590] * 3
    assert count_parameters(g.encoder) == 1_845_248 + 2 * 1000 * 128
    critics = [count_parameters(Critic(size, 512, cfg)) for size in cfg.stage_sizes]
    joint = (512 + 128) * 512 + 512 - 128 * 16  # the joint conv1x1, minus the head's narrower input
    assert critics == [n + joint for n in (1_624_769, 3_984_065, 6_343_361, 8_702_657)]


def test_each_stage_doubles_and_stays_in_range(tiny_phantom):
    vocab, train, _ = tiny_phantom
    cfg = Config(
        text=tiny_model("xraygan").text,
        stage_sizes=(32, 64, 128),
        batch_sizes=(4,) * 3,
        lrs=(1e-4,) * 3,
        epochs=(1,) * 3,
        prog_channels=32,
        prog_text=16,
    )
    g = Generators(cfg, len(vocab))
    tokens = TokenBatch.of(train.tokens[:3])
    for stage, size in enumerate(cfg.stage_sizes):
        f, l, c = g(tokens.findings, tokens.impression, tokens.flat, stage)
        assert f.shape == l.shape == (3, 1, size, size) and c.shape == (3, cfg.text.out_dim)
        assert f.abs().max() <= 1 and l.abs().max() <= 1


def test_progressive_stage_blends_half_and_half():
    stage = ProgressiveGenerator(text_dim=8, channels=16, blocks=1, text_proj=4, blend=0.5)
    torch.nn.init.zeros_(stage.head[0].weight)
    torch.nn.init.zeros_(stage.head[0].bias)  # the generated branch is tanh(0) = 0
    prev = torch.rand(2, 1, 8, 8) * 2 - 1
    out = stage(prev, torch.randn(2, 8))
    upsampled = torch.nn.functional.interpolate(prev, scale_factor=2, mode="bilinear")
    torch.testing.assert_close(out, 0.5 * upsampled)


def test_the_report_vector_reaches_the_critic():
    """The official critic's instance norm zeroes the condition; here changing only c changes the score."""
    critic = Critic(32, 64, tiny_model("xraygan"))
    image = torch.rand(4, 1, 32, 32) * 2 - 1
    c = torch.randn(4, 64)
    assert not torch.allclose(critic(image, c), critic(image, c + torch.randn(4, 64)))


@pytest.fixture(scope="module")
def trained(tiny_phantom, tmp_path_factory):
    vocab, train, test = tiny_phantom
    run_dir = tmp_path_factory.mktemp("xraygan-run")
    method = XRayGAN(tiny_model("xraygan"), vocab, image_size=64, device="cpu", seed=0)
    method.fit(train, None, run_dir)
    return method, run_dir


def test_training_learns_the_report(trained, tiny_phantom):
    """On held-out reports, samples are closer to their own case's target than to other cases' targets."""
    method, _ = trained
    _, _, test = tiny_phantom
    views = method.generate(test.tokens, seeds=range(len(test)))
    assert views.frontal.shape == (len(test), 1, 64, 64) and views.frontal.dtype == torch.float32
    fake = torch.cat([views.frontal, views.lateral], dim=1).flatten(1)  # [N, 2*64*64]
    real = torch.from_numpy(test.pixels).float().div(127.5).sub(1).flatten(1)
    dist = torch.cdist(fake, real).square() / fake.shape[1]  # [N, N] mean squared error
    own = dist.diag().mean()
    others = (dist.sum() - dist.diag().sum()) / (len(test) * (len(test) - 1))
    # measured (2 CPU cores, seed 0): 0.90 on phantom-2; 0.97 on phantom-2.1, whose patients differ more in what
    # no report says (habitus, framing, inspiration), so the report explains a smaller share of each image
    assert own < 0.985 * others, (float(own), float(others))


def test_self_consistency_is_the_own_vcn_on_samples(trained, tiny_phantom):
    """What the runner reports as vc_self: the last stage's frozen VCN on generated uint8 pairs."""
    method, _ = trained
    _, _, test = tiny_phantom
    own = method.self_consistency(test.pixels[:8, 0], test.pixels[:8, 1])
    assert own.shape == (8,) and ((own >= 0) & (own <= 1)).all()
    method._vcn, vcn = None, method._vcn
    try:
        assert method.self_consistency(test.pixels[:8, 0], test.pixels[:8, 1]) is None  # no VCN: nothing to report
    finally:
        method._vcn = vcn


def test_run_directory_has_logs_checkpoints_and_the_vcn(trained):
    _, run_dir = trained
    records = [line for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert any('"phase": "gan"' in r and '"vc"' in r for r in records)
    assert any('"phase": "vcn"' in r for r in records)
    assert sorted(p.name for p in (run_dir / "vcn").glob("*.pt")) == ["stage0_32px.pt", "stage1_64px.pt"]
    assert (run_dir / "ckpt" / "last.pt").is_file()


def test_same_seed_same_weights_and_resume_after_a_kill(tiny_phantom, tmp_path, monkeypatch):
    vocab, train, _ = tiny_phantom
    train = train.subset(np.arange(32))
    cfg = tiny(
        epochs=(2, 2), warmup_epochs=1, checkpoint_every=1, vcn=dataclasses.replace(tiny_model("xraygan").vcn, epochs=1)
    )
    runs = []
    for name in ("a", "b"):
        method = XRayGAN(cfg, vocab, image_size=64, device="cpu", seed=3)
        method.fit(train, None, tmp_path / name)
        runs.append(method.state_dict()["generators"])
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key

    # Kill a run in the middle of stage 1's second epoch, then resume it from its last checkpoint.
    calls = {"n": 0}
    original = XRayGAN.train_step

    def dies_later(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # steps: warm-up 1, stage 0 GAN 2, stage 1 GAN 2 (one batch of 32 each): the last
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(XRayGAN, "train_step", dies_later)
    killed = XRayGAN(cfg, vocab, image_size=64, device="cpu", seed=3)
    with pytest.raises(KeyboardInterrupt):
        killed.fit(train, None, tmp_path / "c")
    assert load_checkpoint(tmp_path / "c" / "ckpt" / "last.pt")["stage"] == 1
    monkeypatch.setattr(XRayGAN, "train_step", original)
    resumed = XRayGAN(cfg, vocab, image_size=64, device="cpu", seed=3)
    resumed.fit(train, None, tmp_path / "c", resume=True)
    final = resumed.state_dict()["generators"]
    for key in runs[0]:
        assert torch.equal(runs[0][key], final[key]), key


def test_a_nan_loss_stops_the_run_naming_the_step(tiny_phantom, tmp_path):
    vocab, train, _ = tiny_phantom
    with pytest.raises(XbenchError, match="l2_weight = nan"):  # the config refuses a NaN weight outright
        tiny(l2_weight=float("nan"))
    cfg = tiny(vc_weight=0.0)
    object.__setattr__(cfg, "l2_weight", float("nan"))  # so force one in: the loss itself becomes NaN
    method = XRayGAN(cfg, vocab, image_size=64, device="cpu")
    with pytest.raises(TrainingDiverged, match=r"training diverged at step 1: loss generator = nan"):
        method.fit(train.subset(np.arange(8)), None, tmp_path)


def test_checkpoints_that_need_pickled_code_are_refused(tmp_path):
    torch.save({"x": argparse.Namespace(a=1)}, tmp_path / "evil.pt")  # any class outside the safe list
    digest = hashlib.sha256((tmp_path / "evil.pt").read_bytes()).hexdigest()  # even with its sha256 recorded
    with pytest.raises(XbenchError, match="refusing to load .*evil.pt: it needs pickled code"):
        load_checkpoint(tmp_path / "evil.pt", sha256=digest)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ablation_variants_are_config_values(variant, tiny_phantom, tmp_path):
    vocab, train, _ = tiny_phantom
    cfg = tiny(
        epochs=(1, 1),
        warmup_epochs=1,
        vcn=dataclasses.replace(tiny_model("xraygan").vcn, epochs=1),
        **VARIANTS[variant],
    )
    method = XRayGAN(cfg, vocab, image_size=64, device="cpu")
    method.fit(train.subset(np.arange(16)), None, tmp_path)
    stages = {r["stage"] for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines())}
    assert stages == ({1} if variant == "no_mscgan" else {0, 1})
    assert (tmp_path / "vcn").exists() == (variant != "no_vcn")
    assert type(method.generators.encoder).__name__ == ("FlatEncoder" if variant == "no_hae" else "HierarchicalEncoder")
    critic = next(iter(XRayGAN.conditional_critics(cfg, 64).values()))[0]
    assert type(critic).__name__ == ("ProjectionCritic" if variant == "projection" else "Critic")
    # the last stage's critics, measured at the end of fit on whatever was held out (here nothing: the train split)
    auroc = method.fit_summary["critic_report_auroc"]
    assert auroc["split"] == "train" and 0 < auroc["pairs"] <= 16 and 0 <= auroc["frontal"] <= 1, auroc


def test_the_critic_report_auroc_is_paired_counts_ties_half_and_skips_identical_reports():
    """P(own > other) per image (each against itself), ties 1/2, cases whose neighbour's report is the same left out."""
    from methods.training import critic_report_auroc

    # reports as token rows; case 2's neighbour (case 1) has its report, token for token: no mismatch there
    pairs = argparse.Namespace(tokens=argparse.Namespace(flat=np.array([[5, 1], [6, 2], [6, 2], [7, 0]])))
    own, other = torch.tensor([1.0, 2.0, -9.0, 0.0]), torch.tensor([0.0, 2.0, 9.0, 1.0])

    class Stub:
        def critic_report_scores(self, state, data):
            return {"frontal": (own, other)}

    # case 0: own higher (1), case 1: a tie (1/2), case 2: left out, case 3: own lower (0) -> 1.5 / 3
    assert critic_report_auroc(Stub(), None, pairs) == {"frontal": 0.5, "pairs": 3}


@pytest.mark.parametrize("threshold", [1.01, 0.0])
def test_the_vcn_gate_stops_a_run_below_its_threshold_and_records_the_auroc(threshold, tiny_phantom, tmp_path):
    """Each stage's VCN is scored on held-out val pairs; below model.vcn.min_auroc the run stops, naming the
    stage and the AUROC (an AUROC above 1 is impossible: 1.01 always stops; 0 never does)."""
    vocab, train, test = tiny_phantom
    vcn = dataclasses.replace(tiny_model("xraygan").vcn, epochs=1, min_auroc=threshold)
    method = XRayGAN(tiny(epochs=(1, 1), warmup_epochs=1, vcn=vcn), vocab, image_size=64, device="cpu")
    val = test.subset(np.arange(16))
    if threshold > 1:
        with pytest.raises(XbenchError, match=r"xraygan stage 0 \(32 px\): the VCN separates held-out val pairs "
                           r"with AUROC 0\.\d+ < model\.vcn\.min_auroc 1\.01"):  # fmt: skip
            method.fit(train.subset(np.arange(16)), val, tmp_path)
        return
    method.fit(train.subset(np.arange(16)), val, tmp_path)
    scores = method.fit_summary["vcn_val"]
    assert sorted(scores) == ["stage0_32px", "stage1_64px"]
    assert all(0 <= s["auroc"] <= 1 and s["n"] == 16 for s in scores.values())
    logged = [r for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines()) if r["phase"] == "vcn_val"]
    assert [r["stage"] for r in logged] == [0, 1]


def test_no_stage_spends_more_than_a_quarter_of_its_epochs_below_one_percent_of_its_base_rate():
    from methods.training import Phase
    from methods.xraygan import lr_factor

    def low_fraction(cfg, epochs):
        phase = Phase(0, "gan", epochs, 1)
        return sum(lr_factor(cfg, phase, e) < 0.01 for e in range(epochs)) / epochs

    cfg = Config()
    assert [low_fraction(cfg, e) for e in cfg.epochs] == [0.0] * 4  # it ends at 0.2^2 = 4 % of the base
    assert [lr_factor(cfg, Phase(0, "gan", 90, 1), e) for e in (0, 44, 45, 67, 68, 89)] == pytest.approx(
        [1, 1, 0.2, 0.2, 0.04, 0.04]
    )
    assert lr_factor(cfg, Phase(0, "warmup", 20, 1), 19) == 1
    # The paper's "x0.2 every 20 epochs" over the official epochs breaks it (one --set away).
    every = dataclasses.replace(cfg, lr_schedule="every")
    assert all(low_fraction(every, e) > 0.25 for e in every.epochs)
