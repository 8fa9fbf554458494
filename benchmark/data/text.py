"""Report text normalisation and sentence splitting, shared by every dataset and text encoder.

The official XRayGAN code splits on every '.' (so decimals break and a trailing period leaves an empty
sentence) and deletes punctuation inside tokens ("x-ray" -> "xray"). xbench splits at sentence ends only,
keeps hyphenated words and decimals whole, and keeps the Open-i anonymisation token ``XXXX`` as the one
token ``xxxx`` (``x-XXXX`` -> ``x-xxxx``).
"""

import dataclasses
import functools
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

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


PAD, UNK, SEP = "<pad>", "<unk>", "<sep>"  # ids 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Tokens:
    """Reports as padded id arrays (0 = padding, right-padded; int64).

    ``findings`` / ``impression``: [N, S, W] (sentences of words) for the hierarchical encoder;
    ``flat``: [N, T], FINDINGS then ``<sep>`` then IMPRESSION, for the flat encoder.
    """

    findings: np.ndarray
    impression: np.ndarray
    flat: np.ndarray

    def __len__(self) -> int:
        return len(self.flat)

    def __getitem__(self, index) -> "Tokens":
        return Tokens(self.findings[index], self.impression[index], self.flat[index])


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Word ids and padded sizes, built from the train split only (the official code used every report,
    test included, and ordered words by a Python set, so its ids changed with PYTHONHASHSEED)."""

    words: tuple[str, ...]  # id -> word; words[0:3] = PAD, UNK, SEP
    max_sentences: int  # sentences per section, the train split's maximum
    max_words: int  # words per sentence
    max_tokens: int  # words of a whole report, flat

    @classmethod
    def build(cls, sections: Iterable[tuple[str, str]], min_count: int = 1) -> "Vocab":
        """From (findings, impression) texts; words by descending count, ties alphabetical."""
        counts: Counter[str] = Counter()
        max_s = max_w = max_t = 1
        for findings, impression in sections:
            parts = [split_sentences(findings), split_sentences(impression)]
            for sentences in parts:
                counts.update(w for s in sentences for w in s)
                max_s = max(max_s, len(sentences))
                max_w = max([max_w, *map(len, sentences)])
            max_t = max(max_t, sum(len(s) for part in parts for s in part) + 1)
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls((PAD, UNK, SEP, *kept), max_s, max_w, max_t)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def unknown(self, text: str) -> list[str]:
        """The words of ``text`` outside the vocabulary (they encode as ``<unk>``)."""
        return sorted({w for s in split_sentences(text) for w in s if w not in self.index})

    def encode(self, sections: Sequence[tuple[str, str]]) -> Tokens:
        """(findings, impression) texts -> Tokens; longer texts are cut at the vocabulary's sizes."""
        n, s, w = len(sections), self.max_sentences, self.max_words
        findings = np.zeros((n, s, w), np.int64)
        impression = np.zeros((n, s, w), np.int64)
        flat = np.zeros((n, self.max_tokens), np.int64)
        unk, sep = self.index[UNK], self.index[SEP]
        for i, texts in enumerate(sections):
            sequences = []
            for array, text in zip((findings, impression), texts):
                ids = [[self.index.get(word, unk) for word in sentence] for sentence in split_sentences(text)]
                for j, sentence in enumerate(ids[:s]):
                    array[i, j, : min(len(sentence), w)] = sentence[:w]
                sequences.append([t for sentence in ids for t in sentence])
            sequence = (sequences[0] + [sep] + sequences[1])[: self.max_tokens]
            flat[i, : len(sequence)] = sequence
        return Tokens(findings, impression, flat)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        data = json.loads(path.read_text())
        return cls(tuple(data["words"]), data["max_sentences"], data["max_words"], data["max_tokens"])
