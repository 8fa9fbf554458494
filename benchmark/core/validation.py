"""Range checks for configuration dataclasses, by the naming conventions every Config follows.

Each Config calls ``check_ranges(self)`` in ``__post_init__``, so a value out of range is refused where the
setting is defined, whether it came from the defaults, a TOML file or ``--set`` (``epochs=[-1, 2]``, a batch
size of 0, a negative learning rate). A tuple is checked element by element; None means "not set".
"""

import dataclasses
import re

from benchmark.core.errors import XbenchError

# (pattern on the field name, test, what the value must be). The first matching pattern applies.
RULES: tuple[tuple[str, object, str], ...] = (
    (r"(^|_)betas$", lambda v: 0 <= v < 1, "in [0, 1)"),
    (r"ema_decay$", lambda v: 0 <= v < 1, "in [0, 1)"),  # 0: no moving average
    (r"(^|_)(decay|blend)$", lambda v: 0 < v <= 1, "in (0, 1]"),
    (r"(^|_)lrs?(_[a-z])?$|_lr$", lambda v: v > 0, "> 0"),
    (r"lr_gamma$", lambda v: 0 < v <= 1, "in (0, 1]"),
    (r"(^|_)(epochs|milestones|bootstrap|res_blocks)$|^z_dim$", lambda v: v >= 0, ">= 0"),  # z_dim 0: no noise
    (r"batch_sizes?$|_every$|step_epochs$|blocks$", lambda v: v >= 1, ">= 1"),
    (
        r"(^|_)(size|sizes|dim|channels|width|hidden|text|proj|gf|ndf|max_cases|max_eval_cases)$",
        lambda v: v >= 1,
        ">= 1",
    ),
    (r"_weight$|^gamma\d$|grad_clip$", lambda v: v >= 0, ">= 0"),
)


def check_ranges(cfg) -> None:
    """Raise XbenchError naming the first field of dataclass ``cfg`` whose value is out of its range."""
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        values = value if isinstance(value, tuple) else (value,)
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not numbers:
            continue
        for pattern, ok, must in RULES:
            if re.search(pattern, field.name):
                bad = [v for v in numbers if not ok(v)]
                if bad:
                    owner = f"{type(cfg).__module__.rsplit('.', 1)[-1]}.{type(cfg).__qualname__}"
                    raise XbenchError(f"{owner}.{field.name} = {value!r}: each value must be {must} (got {bad[0]!r})")
                break
