"""Every registered (method, variant) appears in some leaderboard table, or is left out by name with a reason."""

from benchmark.pipeline.leaderboard import UNTABULATED, tabulated
from methods import METHODS


def test_every_registered_variant_is_in_a_table_or_excluded_by_name():
    registered = {(name, variant) for name, cls in METHODS.items() for variant in cls.variants}
    missing = registered - tabulated() - set(UNTABULATED)
    assert not missing, f"in no leaderboard block: {sorted(missing)}; add them to TABLE1_BLOCKS or UNTABULATED"
    assert not (tabulated() | set(UNTABULATED)) - registered  # no block names a variant that does not exist
    assert all(why.strip() for why in UNTABULATED.values())
