"""Each defining mechanism changes the outcome (slow: real trainings on phantom; ``pytest -m slow``).

- the main job (``xbench run``: XRayGAN, tiny, phantom) draws samples that vary with the report, and each
  stage's VCN passes its gate;
- XRayGAN's critic scores real images higher with their own report than with another case's;
- with the same budget, the full XRayGAN gets a higher score from its own frozen VCN than ``no_vcn``;
- every conditional method's samples depend on the report (the same noise, other reports: other images).
Figures measured on a 2-core CPU are in the comments and in the issue note.
"""

import dataclasses
import os

import numpy as np
import pytest
import torch

from benchmark.data.images import to_unit_range
from benchmark.pipeline.config import load_config
from benchmark.pipeline.runner import run
from methods import METHODS
from methods.vcn import load_vcn
from tests.tiny import tiny_model

pytestmark = pytest.mark.slow
CHEAP_EVAL = ['eval.metrics=["ssim"]', "eval.bootstrap=0"]  # the mechanisms, not the metrics
# The setting of the main job and of its no_vcn twin: tiny by default (minutes); XBENCH_MECHANISMS_SETTING=small
# runs the same tests where the VCN has 1,809 train cases to learn from (about an hour on 2 CPU cores).
SETTING = os.environ.get("XBENCH_MECHANISMS_SETTING", "tiny")


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """The README's main job (XRayGAN, tiny, phantom), evaluated with SSIM only; and its run directory."""
    runs = tmp_path_factory.mktemp("runs")
    cfg = load_config("xraygan", "phantom", setting=SETTING, sets=CHEAP_EVAL)
    result = run(cfg, runs_dir=runs)
    return result, runs / result.run_id, cfg


def test_the_main_job_samples_vary_with_the_report(main_job):
    result, _, _ = main_job
    spread = result.sample_spread
    # Before the He init: 1.0 (frontal) and 0.16 (lateral) grey levels, one flat image for every report. The
    # main job on phantom-2.1 now: 5.4 and 6.3 (real images 45.7, 44.3). Most of the real spread is anatomy
    # the report does not determine, which a noise-free L2 generator cannot draw.
    for view in ("frontal", "lateral"):
        assert spread[view]["fake_std"] >= 3.0, spread
    # Each stage's VCN is measured on held-out pairs and recorded (the tiny setting turns the gate off: its
    # 256-case VCN hardly separates phantom-2.1's patients at 64 px; configs/tiny/xraygan.toml).
    assert set(result.training["vcn_val"]) == {"stage0_32px", "stage1_64px"}, result.training


@pytest.mark.xfail(
    strict=True,
    reason="measured 0.50 at both settings. tiny: the last stage's critic has had 8 updates. small (570 updates "
    "at 64 px, the matching-aware term on): 0.496 / 0.514 (F / L); 0.49 / 0.50 over the 212 test pairs whose "
    "visible findings differ. Critic-only trainings against the small run's frozen generator (issue 13 note) put "
    "the limit in the budget, not in the loss or the conditioning: a projection term, layer norm for instance "
    "norm, or a lr of 1e-3 all stay at 0.46-0.53 while generated fakes are in the loss (real-fake gaps of 11-23 "
    "take the critic's capacity); with matching as the only task and no normalisation, 300 updates reach 0.60. "
    "The report vector does carry the findings (linear probe AUROC 0.81-0.97). The toy test in "
    "test_conditioning.py shows the term working where the report decides the image",
)
def test_the_critic_prefers_each_image_with_its_own_report(main_job):
    """The paper's critic, as the run recorded it (``critic_report_auroc``: the last stage's critics on the val
    pairs, each real image under its own report against the next case's; methods.training)."""
    result, _, _ = main_job
    auroc = result.training["critic_report_auroc"]
    print(f"critic: P(own report scores higher), paired: {auroc}")
    assert min(auroc["frontal"], auroc["lateral"]) > 0.6


@pytest.mark.xfail(
    SETTING == "tiny",
    strict=True,
    reason="tiny: measured P(same) 0.534 (full) vs 0.531 (no_vcn): the 256-case stage-1 VCN separates held-out "
    "pairs with AUROC 0.56 only, so the VC term is noise. At the small setting (held-out AUROC 0.944) the same "
    "comparison gives 0.849 vs 0.413, and the independent VC judge 0.756 vs 0.439",
)
def test_the_full_model_is_more_view_consistent_than_no_vcn_by_its_own_vcn(main_job, tmp_path):
    from PIL import Image

    result, run_dir, cfg = main_job
    twin = load_config("xraygan", "phantom", setting=SETTING, variant="no_vcn", sets=CHEAP_EVAL)
    no_vcn = run(twin, runs_dir=tmp_path)
    assert no_vcn.budget["pairs_seen"] == result.budget["pairs_seen"]  # the same budget
    vcn = load_vcn(run_dir / "vcn" / "stage1_64px.pt")  # the full model's own, frozen, last stage

    def score(samples) -> float:
        views = [
            torch.stack([to_unit_range(np.asarray(Image.open(p))) for p in sorted((samples / v).glob("*.png"))])
            for v in ("frontal", "lateral")
        ]
        with torch.no_grad():
            return float(vcn.p_same(views[0][:, None], views[1][:, None]).mean())

    full, ablated = score(run_dir / "samples"), score(tmp_path / no_vcn.run_id / "samples")
    print(f"own-VCN P(same) on generated test pairs: full {full:.3f}, no_vcn {ablated:.3f}")
    assert full > ablated + 0.02  # a margin above noise: a tenth of the real matched-mismatched gap at 64 px


# Least spread (grey levels, across 32 reports at one noise seed, the worse view) each method must show. Measured
# at the tiny setting on 2 loaded CPU cores (frontal / lateral): GAN-INT-CLS 3.78 / 4.69 on the frozen pretrained
# embedding (0.83 when it trained jointly from random weights); StackGAN 0.07 / 0.16 (0.02 before): its KL
# term pulls the conditioning mean to 0 within 4 + 4 epochs, so its bar only tells "reads the report" from
# "does not" (a generator that drops the report moves by exactly 0).
MIN_SPREAD = {"xraygan": 1.0, "gan_int_cls": 1.0, "stackgan": 0.03, "attngan": 1.0}


@pytest.mark.parametrize("name", sorted(MIN_SPREAD))
def test_every_conditional_method_draws_other_images_for_other_reports(name, tiny_phantom, tmp_path):
    """The same per-case noise (one seed for every case), other reports: the images must differ."""
    vocab, train, test = tiny_phantom
    cls = METHODS[name]
    cfg = tiny_model(name)
    if name == "xraygan":  # no val split here, so no VCN gate; the short VCN is enough for this check
        cfg = dataclasses.replace(cfg, vcn=dataclasses.replace(cfg.vcn, epochs=1))
    method = cls(cfg, vocab, image_size=64, device="cpu", seed=0)
    method.fit(train.subset(np.arange(256)), None, tmp_path)
    views = method.generate(test.tokens[:32], [7] * 32)
    for images in (views.frontal, views.lateral):
        spread = float((images + 1).mul(127.5).std(dim=0).mean())  # grey levels, across reports
        print(f"{name}: samples vary across reports by {spread:.2f} grey levels")
        assert spread > MIN_SPREAD[name], (name, spread)
