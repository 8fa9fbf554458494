"""Report text normalisation and sentence splitting, shared by every dataset and text encoder.

The official XRayGAN code splits on every '.' (so decimals break and a trailing period leaves an empty
sentence) and deletes punctuation inside tokens ("x-ray" -> "xray"). xbench splits at sentence ends only,
keeps hyphenated words and decimals whole, and keeps the Open-i anonymisation token ``XXXX`` as the one
token ``xxxx`` (``x-XXXX`` -> ``x-xxxx``).
"""

import re
import unicodedata

# A sentence ends at '.', '!' or '?' followed by white space, so "2.5" stays whole.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# Words: letters/digits, joined by inner hyphens, apostrophes or decimal points.
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'.][a-z0-9]+)*")


def normalise(text: str) -> str:
    """Unicode NFKD without combining marks, lower case, single spaces."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.lower().split())


def tokenize(sentence: str) -> list[str]:
    return _TOKEN.findall(normalise(sentence))


def split_sentences(text: str) -> list[list[str]]:
    """Text -> sentences of tokens; sentences with no token (a stray '.') are dropped."""
    sentences = (tokenize(s) for s in _SENTENCE_END.split(normalise(text)))
    return [s for s in sentences if s]
