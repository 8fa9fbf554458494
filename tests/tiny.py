"""The tiny setting as `xbench run --config tiny` resolves it (configs/tiny/*.toml over the defaults)."""

import dataclasses
import functools

from benchmark.pipeline.config import load_config


@functools.cache
def _resolved(method: str):
    return load_config(method, "phantom", setting="tiny")


def tiny_model(method: str, **changes):
    """``method``'s tiny model config, with ``changes`` on top (nested configs as dataclass values)."""
    return dataclasses.replace(_resolved(method).model, **changes)


def tiny_eval(**changes):
    """The tiny evaluation config, with ``changes`` on top."""
    return dataclasses.replace(_resolved("dummy").eval, **changes)
