"""Text normalisation, sentence splitting and the vocabulary built from the train split."""

import numpy as np

from benchmark.data.text import PAD, SEP, UNK, Vocab, split_sentences


def test_sentences_keep_decimals_hyphens_and_the_anonymisation_token():
    text = "Heart is 2.5 cm.  Normal chest x-XXXX. No XXXX of effusion..  ."
    assert split_sentences(text) == [
        ["heart", "is", "2.5", "cm"],
        ["normal", "chest", "x-xxxx"],
        ["no", "xxxx", "of", "effusion"],
    ]
    assert split_sentences("") == [] and split_sentences("  .  ") == []


def test_vocab_is_deterministic_and_ordered_by_count():
    train = [("The heart is normal. No effusion.", "Normal chest."), ("Heart big.", "Cardiomegaly.")]
    vocab = Vocab.build(train)
    assert vocab.words[:5] == (PAD, UNK, SEP, "heart", "normal")  # count 2 first, then alphabetical
    assert Vocab.build(list(reversed(train))) == vocab
    assert (vocab.max_sentences, vocab.max_words, vocab.max_tokens) == (2, 4, 9)


def test_encode_pads_right_and_maps_unknown_words(tmp_path):
    vocab = Vocab.build([("The heart is normal. No effusion.", "Normal chest.")])
    tokens = vocab.encode([("The heart is huge. No effusion. Extra sentence.", "Normal.")])
    ids = vocab.index
    np.testing.assert_array_equal(
        tokens.findings[0], [[ids["the"], ids["heart"], ids["is"], ids[UNK]], [ids["no"], ids["effusion"], 0, 0]]
    )  # 3rd sentence cut
    np.testing.assert_array_equal(tokens.impression[0], [[ids["normal"], 0, 0, 0], [0, 0, 0, 0]])
    assert tokens.flat[0].tolist()[:9] == [ids[w] for w in ("the", "heart", "is")] + [
        1,
        ids["no"],
        ids["effusion"],
        1,
        1,
        ids[SEP],
    ]
    assert vocab.unknown("The heart is huge, truly.") == ["huge", "truly"]
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == vocab
