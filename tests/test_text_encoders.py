"""Text encoders: shapes, the reference parameter count, masking, empty sections, batching, the registry."""

import numpy as np
import pytest
import torch

from benchmark.core.errors import XbenchError
from benchmark.data.reports import load_reports
from benchmark.data.text import Tokens, Vocab
from methods.base import TextEncoder, TokenBatch, count_parameters
from methods.text_encoders import TEXT_ENCODERS, AdditiveAttention, FlatEncoder, HierarchicalEncoder, get_text_encoder

TINY = TextEncoder.Config(embed_dim=16, hidden=8, out_dim=12)
NAMES = sorted(TEXT_ENCODERS)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny LSTMs gain nothing from intra-op threads, and lose seconds to them on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def texts() -> list[tuple[str, str]]:
    """(findings, impression) of the first 20 Open-i reports, plus one with an empty FINDINGS section."""
    reports = list(load_reports()[0].values())[:20]
    return [(r.findings, r.impression) for r in reports] + [("", "No acute cardiopulmonary disease.")]


@pytest.fixture(scope="module")
def vocab(texts) -> Vocab:
    return Vocab.build(texts)


@pytest.fixture(scope="module")
def tokens(vocab, texts) -> TokenBatch:
    return TokenBatch.of(vocab.encode(texts))


def make(name: str, vocab: Vocab, cfg: TextEncoder.Config = TINY, seed: int = 0) -> TextEncoder:
    torch.manual_seed(seed)
    return get_text_encoder(name, cfg, len(vocab)).eval()


def padded(tokens: TokenBatch, sentences: int = 3, words: int = 5, flat: int = 7) -> TokenBatch:
    """The same reports with extra sentence slots, longer sentences and a longer flat sequence (all pad)."""
    pad = torch.nn.functional.pad
    sections = [pad(t, (0, words, 0, sentences)) for t in (tokens.findings, tokens.impression)]
    return TokenBatch(*sections, pad(tokens.flat, (0, flat)))


@pytest.mark.parametrize("name", NAMES)
def test_shapes_of_every_field(name, vocab, tokens):
    b, s, w = tokens.findings.shape
    out = make(name, vocab)(tokens)
    assert out.report.shape == (b, TINY.out_dim) and out.report.dtype == torch.float32
    if name == "hae":
        assert out.words.shape == (b, 2 * s * w, 2 * TINY.hidden) and out.word_mask.shape == (b, 2 * s * w)
        assert out.sentences.shape == (b, 2 * s, 2 * TINY.hidden) and out.sentence_mask.shape == (b, 2 * s)
        assert out.sentence_mask.dtype == torch.bool
        ids = torch.cat([tokens.findings.flatten(1), tokens.impression.flatten(1)], 1)
        assert torch.equal(out.word_mask, ids != 0)
        first_words = torch.cat([tokens.findings[..., 0], tokens.impression[..., 0]], 1)
        assert torch.equal(out.sentence_mask, first_words != 0)
        assert not out.sentences[~out.sentence_mask].any()
    else:
        assert out.words.shape == (b, tokens.flat.shape[1], 2 * TINY.hidden)
        assert torch.equal(out.word_mask, tokens.flat != 0)
        assert out.sentences is None and out.sentence_mask is None
    assert out.word_mask.dtype == torch.bool
    assert not out.words[~out.word_mask].any() and out.words[out.word_mask].abs().sum(-1).gt(0).all()


def test_hae_parameter_count_matches_the_reference(vocab):
    cfg = TextEncoder.Config()
    hae = HierarchicalEncoder(cfg, len(vocab))
    embeddings = hae.findings.embedding.weight.numel() + hae.impression.embedding.weight.numel()
    assert count_parameters(hae) - embeddings == 1_845_248
    assert embeddings == 2 * len(vocab) * 128 and hae.out_dim == 512
    flat = FlatEncoder(cfg, len(vocab))  # BiLSTM 264,192 + attention 66,048 + Linear(256 -> 512) 131,072
    assert count_parameters(flat) - flat.embedding.weight.numel() == 461_312


def test_embeddings_init_and_pad_row(vocab):
    hae = make("hae", vocab)
    for table in (hae.findings.embedding, hae.impression.embedding):
        assert table.padding_idx == 0 and not table.weight[0].any()
        assert table.weight[1:].abs().max() <= 0.1
    assert hae.findings.embedding.weight.data_ptr() != hae.impression.embedding.weight.data_ptr()


@pytest.mark.parametrize("name", NAMES)
def test_extra_padding_changes_nothing(name, vocab, tokens):
    encoder = make(name, vocab)
    with torch.no_grad():
        a, b = encoder(tokens), encoder(padded(tokens))
    torch.testing.assert_close(b.report, a.report, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.words[b.word_mask], a.words[a.word_mask], atol=1e-5, rtol=1e-5)
    if name == "hae":
        torch.testing.assert_close(b.sentences[b.sentence_mask], a.sentences[a.sentence_mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_pad_embedding_row_is_never_read(name, vocab, tokens):
    encoder = make(name, vocab)
    with torch.no_grad():
        before = encoder(tokens)
        for module in encoder.modules():
            if isinstance(module, torch.nn.Embedding):
                module.weight[0].normal_()
        after = encoder(tokens)
    assert torch.equal(after.report, before.report) and torch.equal(after.words, before.words)


def test_attention_weights_sum_to_one_over_real_tokens(vocab, tokens):
    with torch.no_grad():
        for section in make("hae", vocab).encode_sections(padded(tokens)):
            real = section.word_mask.any(-1)
            sums = section.word_weights.sum(-1)
            torch.testing.assert_close(sums[real], torch.ones_like(sums[real]))
            assert not sums[~real].any() and not section.word_weights[~section.word_mask].any()
            present = section.sentence_mask.any(-1)
            sums = section.sentence_weights.sum(-1)
            torch.testing.assert_close(sums[present], torch.ones_like(sums[present]))
            assert not section.sentence_weights[~section.sentence_mask].any()
        _, _, mask, weights = make("flat", vocab).encode_words(padded(tokens))
    torch.testing.assert_close(weights.sum(-1), torch.ones(len(weights)))
    assert not weights[~mask].any() and (weights[mask] > 0).all()


def masking_effect(attend, h: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> tuple[float, float]:
    """How much ``attend(h, mask) -> context`` moves, on average over the rows, when each row's most attended
    real position is masked out, and when its least attended one is (rows with at least 3 real positions)."""
    rows = mask.sum(-1) >= 3
    h, mask, weights = h[rows], mask[rows], weights[rows]
    top = weights.masked_fill(~mask, -1).argmax(-1)
    low = weights.masked_fill(~mask, 2).argmin(-1)
    context = attend(h, mask)
    moved = []
    for position in (top, low):
        cut = mask.clone()
        cut[torch.arange(len(cut)), position] = False
        moved.append(float((attend(h, cut) - context).norm(dim=-1).mean()))
    return moved[0], moved[1]


def test_the_hae_attends_masking_the_attended_words_moves_it_more_than_the_unattended(vocab, tokens):
    """Uniform pooling passes the sum-to-one test; it fails this one (masking any word moves it alike). The
    HAE's own word and sentence features, its attention with a sharpened score (at initialisation the
    scores are near zero and the weights near uniform; training sharpens them)."""
    encoder = make("hae", vocab)
    with torch.no_grad():
        for section in (encoder.findings, encoder.impression):
            for attention in (section.word_attention, section.sentence_attention):
                attention.score.weight.mul_(1000)
        findings, _ = encoder.encode_sections(padded(tokens))
        levels = {
            "words": (findings.words.flatten(0, 1), findings.word_mask.flatten(0, 1),
                      findings.word_weights.flatten(0, 1), encoder.findings.word_attention),
            "sentences": (findings.sentences, findings.sentence_mask, findings.sentence_weights,
                          encoder.findings.sentence_attention),
        }  # fmt: skip
        for level, (h, mask, weights, attention) in levels.items():
            attended, unattended = masking_effect(lambda x, m: attention(x, m)[0], h, mask, weights)
            print(
                f"HAE {level}: masking the most attended moves the context {attended:.4f}, the least {unattended:.4f}"
            )
            assert attended > 3 * unattended, (level, attended, unattended)


def test_additive_attention_on_an_all_pad_row_gives_zeros():
    torch.manual_seed(0)
    attention = AdditiveAttention(6)
    h = torch.randn(3, 4, 6, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    context, weights = attention(h, mask)
    assert context.shape == (3, 6) and weights.shape == (3, 4)
    assert not context[1].any() and not weights[1].any() and not weights[0, 2:].any()
    torch.testing.assert_close(weights[[0, 2]].sum(-1), torch.ones(2))
    torch.testing.assert_close(context[0], (weights[0, :2, None] * h[0, :2]).sum(0))
    context.sum().backward()
    assert torch.isfinite(h.grad).all() and not h.grad[1].any()


def test_empty_findings_section_encodes_and_trains_both_branches(vocab, tokens):
    hae = make("hae", vocab).train()
    empty = int(torch.nonzero(tokens.findings.flatten(1).eq(0).all(1))[-1])
    alone = hae(tokens[empty : empty + 1])
    sections = hae.encode_sections(tokens[empty : empty + 1])
    assert not sections[0].vector.any() and sections[1].vector.abs().sum() > 0
    assert torch.isfinite(alone.report).all() and not alone.sentence_mask[0, : tokens.findings.shape[1]].any()
    pair = tokens[[0, empty]]
    out = hae(pair)
    (out.report.sum() + out.words.sum() + out.sentences.sum()).backward()
    for table in (hae.findings.embedding, hae.impression.embedding):
        assert torch.isfinite(table.weight.grad).all() and table.weight.grad.abs().sum() > 0
        assert not table.weight.grad[0].any()
    assert all(torch.isfinite(p.grad).all() for p in hae.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", NAMES)
def test_reports_differ_and_batch_of_one_matches_the_batch(name, vocab, tokens):
    encoder = make(name, vocab)
    with torch.no_grad():
        batch = encoder(tokens)
        assert torch.cdist(batch.report, batch.report)[~torch.eye(len(tokens), dtype=torch.bool)].min() > 1e-4
        for i in (0, 3, len(tokens) - 1):
            one = encoder(tokens[i : i + 1])
            torch.testing.assert_close(one.report, batch.report[i : i + 1], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(one.words, batch.words[i : i + 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_float32_under_autocast(name, vocab, tokens):
    a, b = make(name, vocab, seed=3), make(name, vocab, seed=3)
    with torch.no_grad():
        plain = a(tokens)
        assert torch.equal(b(tokens).report, plain.report)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = a(tokens)
    assert mixed.report.dtype == mixed.words.dtype == torch.float32
    torch.testing.assert_close(mixed.report, plain.report)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_autocast_bfloat16(name, vocab, tokens):
    encoder = make(name, vocab).cuda().train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = encoder(TokenBatch(tokens.findings.cuda(), tokens.impression.cuda(), tokens.flat.cuda()))
        loss = torch.nn.Linear(TINY.out_dim, 1).cuda()(out.report).sum()  # a bf16 consumer downstream
    loss.float().backward()
    assert out.report.dtype == torch.float32 and torch.isfinite(out.report).all()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters() if p.grad is not None)


def test_an_all_empty_batch_gives_zeros(vocab):
    sections = np.zeros((2, 3, 4), np.int64)
    tokens = TokenBatch.of(Tokens(sections, sections, np.zeros((2, 5), np.int64)))
    for name in NAMES:
        out = make(name, vocab)(tokens)
        assert out.report.shape == (2, TINY.out_dim) and not out.report.any() and not out.word_mask.any()


def test_registry():
    assert TEXT_ENCODERS == {"hae": HierarchicalEncoder, "flat": FlatEncoder}
    assert isinstance(get_text_encoder("flat", TINY, 10), FlatEncoder)
    with pytest.raises(XbenchError, match="unknown text encoder 'lstm'; choose one of: flat, hae"):
        get_text_encoder("lstm", TINY, 10)
