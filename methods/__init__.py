"""Methods: ``METHODS[name](Config, vocab, image_size=...)`` then ``fit`` and ``generate``.

Add a method by writing one file (docstring, Config with ``tiny()``, networks, the Method subclass) and one
line below. Text encoders shared by every method are in ``methods.text_encoders.TEXT_ENCODERS``.
"""

from benchmark.core.errors import unknown_name
from methods.attngan import AttnGAN
from methods.base import Method
from methods.dummy import Dummy
from methods.gan_int_cls import GanIntCls
from methods.stackgan import StackGAN
from methods.text_encoders import TEXT_ENCODERS, get_text_encoder
from methods.xraygan import XRayGAN

METHODS: dict[str, type[Method]] = {
    "dummy": Dummy,
    "xraygan": XRayGAN,
    "gan_int_cls": GanIntCls,
    "stackgan": StackGAN,
    "attngan": AttnGAN,
}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise unknown_name("method", name, METHODS)
    return METHODS[name]


__all__ = ["METHODS", "TEXT_ENCODERS", "Method", "get_method", "get_text_encoder"]
