"""Every registered (method, variant) appears in some leaderboard table, or is left out by name with a reason."""

import pytest

from benchmark.pipeline.config import load_config
from benchmark.pipeline.leaderboard import (
    BUDGET_TOLERANCE,
    ONE_PROTOCOL,
    TABLE1_BLOCKS,
    UNTABULATED,
    block_terms,
    tabulated,
    terms_header,
)
from methods import METHODS


def test_every_registered_variant_is_in_a_table_or_excluded_by_name():
    registered = {(name, variant) for name, cls in METHODS.items() for variant in cls.variants}
    missing = registered - tabulated() - set(UNTABULATED)
    assert not missing, f"in no leaderboard block: {sorted(missing)}; add them to TABLE1_BLOCKS or UNTABULATED"
    assert not (tabulated() | set(UNTABULATED)) - registered  # no block names a variant that does not exist
    assert all(why.strip() for why in UNTABULATED.values())


@pytest.mark.parametrize("setting", ["tiny", "small", "paper"])
def test_the_one_protocol_block_is_one_set_of_terms_and_its_header_says_which(setting):
    _, members = TABLE1_BLOCKS[ONE_PROTOCOL]
    terms = block_terms(members, "phantom", setting)
    assert {m for m, _ in terms} == {"xraygan", "gan_int_cls", "stackgan", "attngan"}  # the floors have none
    shared = {t.shared for t in terms.values()}
    assert len(shared) == 1, f"the one-protocol block's terms differ at {setting}: {terms}"
    header = terms_header(terms, one_protocol=True)
    assert header.startswith("terms: WGAN-GP (lambda 10), 100 x L2, no matching term, no warm-up"), header
    assert "xraygan: + VC x 1" in header  # XRayGAN's own mechanism, named beside the shared terms


TINY_BUDGETS = pytest.mark.xfail(
    strict=True,
    reason="the tiny setting (CI) is sized to train in about a minute per method on a CPU, not to equal budgets: "
    "Table 1a at 1000 train cases, measured 2k (attngan), 8k (stackgan, gan_int_cls), 34k pairs (xraygan: 30 "
    "warm-up + 4 GAN epochs); the leaderboard notes it (budget_notes)",
)


@pytest.mark.parametrize("setting", [pytest.param("tiny", marks=TINY_BUDGETS), "small"])
def test_table1_blocks_are_equal_within_ten_percent_in_gan_pairs(setting, tiny_phantom):
    """GAN pairs seen (epochs x train cases, warm-up included) of each block's trained members, at one n_train."""
    vocab, _, _ = tiny_phantom
    for label, members in TABLE1_BLOCKS:
        pairs = {}
        for method, variant in members:
            cfg = load_config(method, "phantom", setting=setting, variant=variant)
            cls = METHODS[method]
            if not cls.trains:
                continue
            model = cls(cfg.model, vocab, image_size=cfg.data.image_size, device="cpu")
            pairs[f"{method} [{variant}]"] = model.budget(1000)["pairs_seen"]
        assert max(pairs.values()) <= (1 + BUDGET_TOLERANCE) * min(pairs.values()), f"{setting}, {label}: {pairs}"


def test_a_block_header_states_a_report_vector_width_that_differs():
    from benchmark.pipeline import leaderboard

    # at the small setting AttnGAN's DAMSM-sized report vector is 64-d, every other method's 128-d
    members = dict(leaderboard.TABLE1_BLOCKS)[leaderboard.TABLE1_BLOCKS[1][0]]
    assert leaderboard.report_widths(members, "phantom", "small") == "report vector 128-d (attngan 64-d)"
