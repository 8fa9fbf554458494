"""Each defining term of a generator step is connected. XRayGAN: the logged generator loss is adv + 100 x L2 +
w x VC term for term, and the VC term alone moves both view generators. StackGAN: the generators use their
conditioning-augmentation sample. The report encoders' attention follows its scores. A disconnected term fails
here (the first training steps' golden values in ``xbench check --layer steps`` catch some from the other side)."""

import copy
import dataclasses
import tempfile
from pathlib import Path

import pytest
import torch

from benchmark.core.seeds import seed_everything
from benchmark.data.images import to_unit_range
from benchmark.pipeline.check.steps import untrained_helpers
from methods.vcn import consistency_loss
from methods.xraygan import XRayGAN
from tests.tiny import tiny_model


def gan_step(tiny_phantom, **changes) -> tuple[XRayGAN, dict, dict[str, torch.Tensor]]:
    """One stage-0 GAN-phase step of a fresh tiny XRayGAN (its VCN at its seeded initialisation, frozen):
    (the method, its losses, the generators' parameters before the step, plus "_state": the stage (critics
    after their step, the VCN), "_before": a copy of the generators before the step, "_index": the batch)."""
    vocab, train, _ = tiny_phantom
    cfg = untrained_helpers(dataclasses.replace(tiny_model("xraygan"), **changes))
    seed_everything(0)
    method = XRayGAN(cfg, vocab, image_size=64, device=torch.device("cpu"), seed=0)
    method.val = None
    phase = next(p for p in method.phases() if p.stage == 0 and p.name == "gan")
    with tempfile.TemporaryDirectory() as run_dir:
        state = method.begin_stage(0, train, Path(run_dir))
        before = {k: v.detach().clone() for k, v in state.generators.named_parameters()}
        generators_before = copy.deepcopy(state.generators)
        index = torch.arange(phase.batch_size)
        losses = method.train_step(state, phase, index)
    extra = {"_after": dict(state.generators.named_parameters()), "_state": state, "_before": generators_before}
    return method, {k: float(v) for k, v in losses.items()}, before | extra | {"_index": index}


def independent_terms(method, params) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """adv, L2 and VC recomputed here from their pieces (the generators before the step, the critics after
    theirs, the frozen VCN, the real batch), not from what ``train_step`` logged."""
    state, generators, index = params["_state"], params["_before"], params["_index"]
    batch = state.tokens[index]
    real = to_unit_range(state.real[index])
    fake_f, fake_l, c = generators(batch.findings, batch.impression, batch.flat, 0)
    critics = state.discriminators
    adv = -(critics.frontal(fake_f, c).mean() + critics.lateral(fake_l, c).mean())
    l2 = ((fake_f - real[:, :1]) ** 2).mean() + ((fake_l - real[:, 1:]) ** 2).mean()
    vc = consistency_loss(state.vcn, fake_f, fake_l)
    return adv, l2, vc


def test_the_generator_loss_is_adv_plus_l2_plus_vc_term_for_term(tiny_phantom):
    method, losses, params = gan_step(tiny_phantom, vc_weight=1.0)
    cfg = method.cfg
    adv, l2, vc = (float(t) for t in independent_terms(method, params))
    assert cfg.adv_weight == 1.0 and cfg.l2_weight == 100.0 and vc > 0  # the paper's weights, a term not zero
    assert losses["generator"] == pytest.approx(adv + 100 * l2 + cfg.vc_weight * vc, rel=1e-5)
    # and each logged term is the one recomputed here (a term logged but left out of the loss fails above)
    assert (losses["adv"], losses["l2"], losses["vc"]) == pytest.approx((adv, l2, vc), rel=1e-5)


def test_the_vc_terms_gradient_reaches_both_view_generators(tiny_phantom):
    """The VC term alone, differentiated through the generators as they were before the step: non-zero
    gradients in both views' cascades (a term that saw one view detached would leave that one at zero)."""
    method, _, params = gan_step(tiny_phantom, vc_weight=1.0)
    _, _, vc = independent_terms(method, params)
    generators = params["_before"]
    generators.zero_grad(set_to_none=True)
    vc.backward()
    for view in (generators.frontal, generators.lateral):
        norm = sum(float(p.grad.abs().sum()) for p in view.parameters() if p.grad is not None)
        assert norm > 0, "the VC term's gradient does not reach this view's generator"


@pytest.mark.parametrize("view", ["frontal", "lateral"])
def test_the_vc_term_alone_moves_each_view_generator(tiny_phantom, view):
    """adv and L2 weighted 0: whatever the step changes in a view's generator, the VC term's gradient did."""
    _, losses, params = gan_step(tiny_phantom, vc_weight=1.0, adv_weight=0.0, l2_weight=0.0)
    after = params.pop("_after")
    moved = [k for k in params if k.startswith(f"{view}.") and not torch.equal(params[k], after[k].detach())]
    assert losses["vc"] > 0 and moved, f"the VC term did not reach the {view} generator"


@pytest.mark.parametrize("stage", [1, 2])
def test_stackgans_generators_draw_their_condition_from_the_ca_sample(stage):
    """Conditioning augmentation is used, not only trained: with the report and z fixed, another CA noise draw
    (eps of that stage) gives another image. A generator that took mu, bypassing the sample, would not."""
    from methods.stackgan import ViewGenerator

    cfg = tiny_model("stackgan")
    torch.manual_seed(0)
    g = ViewGenerator(cfg, 64).eval()
    text, noise = torch.randn(4, cfg.text.out_dim), torch.randn(4, cfg.z_dim + 2 * cfg.c_dim)
    other = noise.clone()
    start = cfg.z_dim + (stage - 1) * cfg.c_dim  # this stage's eps in [z, eps_I, eps_II]
    other[:, start : start + cfg.c_dim] = torch.randn(4, cfg.c_dim)
    with torch.no_grad():
        a, b = g(text, noise, stage)[0], g(text, other, stage)[0]
    # relative (an initialised Stage-II draws near 0): measured 0.94 (Stage-I) and 0.84 (Stage-II) of the
    # image's largest value; a generator that took mu: exactly 0
    assert (a - b).abs().max() > 0.1 * a.abs().max() > 0


def test_the_encoders_attention_follows_its_scores_not_a_uniform_pool():
    """HAE's (and the flat encoder's) attention: with a scorer that prefers one word, changing that word moves
    the report vector; changing another word hardly does. Uniform pooling moves it equally for both."""
    from methods.text_encoders import AdditiveAttention

    dim = 8
    attention = AdditiveAttention(dim)
    with torch.no_grad():  # score_t = 10 * tanh(h_t[0]): the word whose feature 0 is high takes the weight
        attention.proj.weight.copy_(torch.eye(dim))
        attention.proj.bias.zero_()
        attention.score.weight.zero_()
        attention.score.weight[0, 0] = 10.0
    torch.manual_seed(0)
    h = torch.randn(1, 6, dim) * 0.1
    h[0, 2, 0] = 3.0  # word 2 is the attended one
    mask = torch.ones(1, 6, dtype=torch.bool)

    def moved(word: int) -> float:
        other = h.clone()
        other[0, word, 1:] += 1.0  # another meaning, the same score
        return float((attention(other, mask)[0] - base).norm())

    with torch.no_grad():
        base, weights = attention(h, mask)
        assert weights[0].argmax() == 2 and weights[0, 2] > 0.99
        assert moved(2) > 50 * moved(4)  # measured: 2.65 against 6.8e-5 (a uniform pool: equal)
