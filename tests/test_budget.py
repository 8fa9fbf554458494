"""Training budgets (result.json "budget", Table 1's budget column and its note) and the sample spread."""

import numpy as np

from benchmark.data.text import Vocab
from benchmark.pipeline.leaderboard import Row, budget_notes, format_budget
from benchmark.pipeline.runner import sample_spread
from methods.xraygan import Config, XRayGAN


def test_xraygan_budget_at_the_paper_setting():
    vocab = Vocab(("<pad>", "<unk>", "<sep>", "a"), 1, 1, 2)
    budget = XRayGAN(Config(), vocab, image_size=256, device="cpu").budget(1809)
    assert budget["epochs"] == 20 + 90 + 90 + 120 + 120
    assert budget["pairs_seen"] == 440 * 1809
    # ceil(1809 / batch) updates per epoch: 19 at 96 (warm-up and stage 0), 38 at 48, 76 at 24, 151 at 12.
    assert budget["generator_updates"] == 20 * 19 + 90 * 19 + 90 * 38 + 120 * 76 + 120 * 151
    # the frozen VCN's pretraining beside it: 20 epochs at each of the 4 stages (the official VCN schedule)
    assert budget["pretraining"] == {"vcn": {"pairs_seen": 80 * 1809, "epochs": 80}}
    assert format_budget(budget) == "440 ep, 796k pairs, 32.8k G updates, pretraining: vcn 145k pairs"
    flops = budget | {"training_flops": 1.234e15, "pretraining": {}}
    assert (
        format_budget(flops, 0.4123, (80.4, 2))
        == "440 ep, 796k pairs, 32.8k G updates, 1.2e+15 FLOP, fit 80.4 s, 2 threads, 0.41 s/pair sampling"
    )
    no_vcn = XRayGAN(Config(vc_weight=0.0), vocab, image_size=256, device="cpu").budget(1809)
    assert "pretraining" not in no_vcn


def _row(label: str, pairs: int) -> Row:
    return Row(label, "measured", {}, 1, {"epochs": 1, "pairs_seen": pairs, "generator_updates": 1})


def test_the_table_says_when_budgets_of_a_block_differ():
    assert budget_notes([_row("a [x]", 100), _row("b [y]", 109)], "small") == ()
    (note,) = budget_notes([_row("a [x]", 100), _row("b [y]", 120)], "tiny")
    assert "tiny setting differ by more than 10%" in note and "a [x]" in note and "b [y]" in note
    (old,) = budget_notes([Row("d [x]", "measured", {}, 1, None)], "tiny")
    assert "no budget recorded" in old and "d [x]" in old


def test_sample_spread_is_the_mean_per_pixel_std_across_cases():
    real = np.zeros((4, 2, 8, 8), np.uint8)
    real[::2] = 10  # every pixel: half the cases 10, half 0 -> std 5
    fake = np.full_like(real, 128)  # one image for every report
    spread = sample_spread(fake, real)
    assert spread == {"frontal": {"fake_std": 0.0, "real_std": 5.0}, "lateral": {"fake_std": 0.0, "real_std": 5.0}}


def test_a_row_that_updates_nothing_is_no_budget_to_compare():
    floor = Row("dummy [default]", "measured", {}, 1, {"epochs": 1, "pairs_seen": 10, "generator_updates": 0})
    assert budget_notes([floor, _row("a [x]", 100), _row("b [y]", 105)], "small") == ()


def test_attngan_budget_counts_its_damsm_pretraining():
    from methods.attngan import AttnGAN
    from methods.attngan_config import Config as AttnConfig

    vocab = Vocab(("<pad>", "<unk>", "<sep>", "a"), 1, 1, 2)
    cfg = AttnConfig()
    budget = AttnGAN(cfg, vocab, image_size=256, device="cpu").budget(1809)
    # full batches of 48 (the last partial one dropped): 37 x 48 = 1776 pairs per epoch
    assert budget["pretraining"] == {"damsm": {"pairs_seen": cfg.damsm.epochs * 1776, "epochs": cfg.damsm.epochs}}
