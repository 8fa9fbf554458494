"""Methods: ``METHODS[name](Config, vocab, image_size=...)`` then ``fit`` and ``generate``.

Adding a method is one file and one line:
  1. ``methods/<name>.py``: docstring (paper, reference code, every departure), a frozen ``Config`` dataclass
     that inherits ``MethodConfig`` (the run settings every method shares) and whose defaults are the paper
     setting, the networks, and a ``Method`` subclass (``StagedMethod`` for the shared resumable training loop,
     which also reports the budget and the steps ``xbench bench`` times). A method without discriminators says
     ``has_critics = False``. Optional: ``configs/{small,tiny}/<name>.toml`` with the CPU-sized deviations,
     and named ``variants`` (config deviations; the first is the default).
  2. one line in ``_REGISTRY`` below, and its variants in a leaderboard block (``TABLE1_BLOCKS``) or in
     ``UNTABULATED`` with why (benchmark/pipeline/leaderboard.py; a test fails otherwise).
tests/test_contract.py then builds, trains, samples, saves and restores it like every other method.
Text encoders shared by every method are in ``methods.text_encoders.TEXT_ENCODERS``.
"""

import importlib

from benchmark.core.errors import unknown_name
from methods.base import Method
from methods.text_encoders import TEXT_ENCODERS, get_text_encoder

_REGISTRY = {  # name -> "module:class"
    "dummy": "methods.dummy:Dummy",
    "xraygan": "methods.xraygan:XRayGAN",
    "gan_int_cls": "methods.gan_int_cls:GanIntCls",
    "stackgan": "methods.stackgan:StackGAN",
    "attngan": "methods.attngan:AttnGAN",
    "copier": "methods.copier:Copier",
    "diffusion": "methods.diffusion:Diffusion",
}


def _load(target: str) -> type[Method]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


METHODS: dict[str, type[Method]] = {name: _load(target) for name, target in _REGISTRY.items()}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise unknown_name("method", name, METHODS)
    return METHODS[name]


__all__ = ["METHODS", "TEXT_ENCODERS", "Method", "get_method", "get_text_encoder"]
