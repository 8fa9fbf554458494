"""Text encoders: the Hierarchical Attentional Encoder (HAE) of XRayGAN and a flat "w/o HAE" ablation.

Paper: Yang et al., "XRayGAN: Consistency-preserving Generation of X-ray Images from Radiology Reports",
section 2.1 (hierarchical attentional encoder: word-level BiLSTM + attention -> sentence vectors, sentence-level
BiLSTM + attention -> section vector, FINDINGS and IMPRESSION fused into one report vector); the ablation
"w/o HAE" encodes the report as one flat word sequence. Reference code: UCSD-AI4H/XRayGAN
``models/Encoder.py`` (``HAttnEncoder``) and ``models/HALSTM.py`` (the v2 word/sentence attention RNNs).
This file is written from the paper and a reading of the reference code; no code is copied.

Architecture ("hae", defaults of ``TextEncoder.Config``), per section (FINDINGS, IMPRESSION; two fully
separate branches that share no weights, not even the embedding table, as in the official code):

    Embedding(V, 128) -> word BiLSTM(128 -> 2x128) over each sentence -> additive attention over words
    -> sentence vectors [S, 256] -> sentence BiLSTM(256 -> 2x128) -> additive attention over sentences
    -> section vector 256

then report = LayerNorm(LeakyReLU_0.2(Linear_nobias(512 -> out_dim)([findings 256, impression 256]))), the norm
without affine parameters and switchable off (``report_norm``; ``TextEncoder.report_vector`` says why). Without the
embeddings this is 1,845,248 parameters at the defaults, the reference count; the embeddings add 2 x V x 128.

Departures from the official code (all deliberate, none changes a shape or a parameter count):

* Masking. The official attention softmaxes run over every position, pad positions included (no mask), so
  the report vector depends on how much padding a batch has. Here both softmaxes mask the padding out;
  a row with no real position at all (an empty FINDINGS section, an unused sentence slot) gives a zero
  vector and zero weights, never NaN.
* Packed sequences instead of left padding. The official data pads words and sentences on the LEFT and
  feeds the pads through the LSTMs. xbench pads on the right (``benchmark.data.text``) and every LSTM here runs
  on ``pack_padded_sequence`` input, so padding never enters a recurrence (forward or backward direction).
  All non-empty sentences of a batch go through the word BiLSTM in one packed call (all-pad sentences are
  skipped, not fed as zero-length sequences) and the results are scattered back to the [B, S, W] layout.
  Inputs must be right-padded: a section's sentence count is its number of non-empty sentence slots and a
  sentence's length its number of non-zero ids, both counted from the start.
* ``padding_idx=0`` on the embeddings: the pad row is zero and gets no gradient (the official pad embedding
  was learned; with packing it is never read anyway). The other rows are initialised U(-0.1, 0.1) as in the
  official code.
* The official ``dropout=0.5`` on the 1-layer LSTMs has no effect in PyTorch (it only applies between
  layers) and is dropped; so are the unused ``max_len`` and ``feature_base_dim`` arguments.

Precision: the encoders always run in float32, also inside a ``torch.autocast`` region (autocast is switched
off for their forward): the recurrences and masked softmaxes are the precision-sensitive part and the
encoder is small next to the generators. Every output tensor is float32.

``EncodedText`` of "hae": ``words`` are the word-level BiLSTM outputs of both sections, FINDINGS then
IMPRESSION, flattened to [B, S_f*W_f + S_i*W_i, 256] (zero at padding) with ``word_mask``; ``sentences`` are
the sentence-level BiLSTM outputs [B, S_f + S_i, 256] with ``sentence_mask``. Of "flat": ``words`` are the
BiLSTM outputs over ``tokens.flat`` [B, T, 256]; ``sentences`` and ``sentence_mask`` are None.
"""

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from benchmark.core.errors import unknown_name
from methods.base import EncodedText, TextEncoder, TokenBatch

EMBED_INIT = 0.1  # real embedding rows ~ U(-0.1, 0.1), as the official code


class AdditiveAttention(nn.Module):
    """Masked additive attention: score_t = v^T tanh(W h_t + b), softmax over the real positions only.

    ``forward(h [..., N, dim], mask [..., N] bool) -> (sum_t a_t h_t [..., dim], a [..., N])``. Padding gets
    weight exactly zero; a row with no real position gives a zero vector and zero weights (never NaN).
    The official code (``models/HALSTM.py``) does not mask: its softmax also spreads weight over the pads.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)  # W, b
        self.score = nn.Linear(dim, 1, bias=False)  # v

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(torch.tanh(self.proj(h))).squeeze(-1).float()
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        # exp(min - max) underflows to exactly 0 on pads; an all-pad row softmaxes to uniform, zeroed here.
        weights = torch.softmax(scores, dim=-1) * mask
        context = (weights.unsqueeze(-1).to(h.dtype) * h).sum(-2)
        return context, weights


def _embedding(vocab_size: int, dim: int) -> nn.Embedding:
    embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
    with torch.no_grad():
        embedding.weight.uniform_(-EMBED_INIT, EMBED_INIT)
        embedding.weight[0].zero_()
    return embedding


def _bilstm(input_dim: int, hidden: int) -> nn.LSTM:
    return nn.LSTM(input_dim, hidden, num_layers=1, batch_first=True, bidirectional=True)


class _Packed(NamedTuple):
    """A packed BiLSTM + attention over the non-empty rows of a right-padded batch, scattered back."""

    outputs: torch.Tensor  # [N, L, 2H], zero at padding and on empty rows
    mask: torch.Tensor  # [N, L] bool
    context: torch.Tensor  # [N, 2H], zero on empty rows
    weights: torch.Tensor  # [N, L], zero at padding and on empty rows


def _encode_rows(
    lstm: nn.LSTM, attention: AdditiveAttention, rows: torch.Tensor, lengths: torch.Tensor, embed=None
) -> _Packed:
    """Run ``lstm`` over the rows of ``rows`` ([N, L] ids if ``embed`` is given, else [N, L, D] features)
    whose length ([N], CPU int64) is positive, in one packed call; attend; scatter back to all N rows."""
    n, total = rows.shape[0], rows.shape[1]
    device = rows.device
    dim = 2 * lstm.hidden_size
    mask = torch.arange(total, device=device) < lengths.to(device).unsqueeze(1)
    keep_cpu = (lengths > 0).nonzero().squeeze(1)
    if len(keep_cpu) == 0:  # nothing to encode: everything is padding
        zeros = torch.zeros(n, total, dim, device=device)
        return _Packed(zeros, mask, zeros[:, 0], torch.zeros(n, total, device=device))
    kept_lengths = lengths[keep_cpu]
    longest = int(kept_lengths.max())
    keep = keep_cpu.to(device, non_blocking=True)
    x = rows.index_select(0, keep)[:, :longest]
    if embed is not None:
        x = embed(x)
    packed = pack_padded_sequence(x, kept_lengths, batch_first=True, enforce_sorted=False)
    h, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=longest)
    context, weights = attention(h, mask.index_select(0, keep)[:, :longest])
    if len(keep_cpu) == n and longest == total:  # nothing to scatter
        return _Packed(h, mask, context, weights)
    pad = total - longest
    outputs = h.new_zeros(n, total, dim).index_copy(0, keep, F.pad(h, (0, 0, 0, pad)))
    context = context.new_zeros(n, dim).index_copy(0, keep, context)
    weights = weights.new_zeros(n, total).index_copy(0, keep, F.pad(weights, (0, pad)))
    return _Packed(outputs, mask, context, weights)


class SectionCode(NamedTuple):
    """One section of a batch encoded by a ``SectionEncoder``."""

    vector: torch.Tensor  # [B, 2H] the section vector (zero for an empty section)
    words: torch.Tensor  # [B, S, W, 2H] word-level BiLSTM outputs (zero at padding)
    word_mask: torch.Tensor  # [B, S, W] bool
    word_weights: torch.Tensor  # [B, S, W] attention over the words of each sentence
    sentences: torch.Tensor  # [B, S, 2H] sentence-level BiLSTM outputs (zero at padding)
    sentence_mask: torch.Tensor  # [B, S] bool
    sentence_weights: torch.Tensor  # [B, S] attention over the sentences


class SectionEncoder(nn.Module):
    """One HAE branch: words -> sentence vectors -> section vector (``HALSTM.py`` v2 word + sentence RNNs)."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int):
        super().__init__()
        self.embedding = _embedding(vocab_size, embed_dim)
        self.word_lstm = _bilstm(embed_dim, hidden)
        self.word_attention = AdditiveAttention(2 * hidden)
        self.sentence_lstm = _bilstm(2 * hidden, hidden)
        self.sentence_attention = AdditiveAttention(2 * hidden)

    def forward(self, ids: torch.Tensor) -> SectionCode:
        """``ids`` [B, S, W], right-padded with 0."""
        b, s, w = ids.shape
        word_lengths = (ids != 0).sum(-1).cpu()  # [B, S]: the one device -> host copy
        sentence_counts = (word_lengths > 0).sum(-1)  # [B]
        words = _encode_rows(
            self.word_lstm,
            self.word_attention,
            ids.reshape(b * s, w),
            word_lengths.reshape(b * s),
            embed=self.embedding,
        )
        sent_in = words.context.view(b, s, -1)
        sents = _encode_rows(self.sentence_lstm, self.sentence_attention, sent_in, sentence_counts)
        return SectionCode(
            sents.context,
            words.outputs.view(b, s, w, -1),
            words.mask.view(b, s, w),
            words.weights.view(b, s, w),
            sents.outputs,
            sents.mask,
            sents.weights,
        )


class HierarchicalEncoder(TextEncoder):
    """ "hae": the paper's Hierarchical Attentional Encoder (section 2.1), masked and packed (see above)."""

    def __init__(self, cfg: TextEncoder.Config, vocab_size: int):
        super().__init__(cfg, vocab_size)
        self.findings = SectionEncoder(vocab_size, cfg.embed_dim, cfg.hidden)
        self.impression = SectionEncoder(vocab_size, cfg.embed_dim, cfg.hidden)
        self.fuse = nn.Linear(4 * cfg.hidden, cfg.out_dim, bias=False)
        self.word_dim = self.sentence_dim = 2 * cfg.hidden

    def encode_sections(self, tokens: TokenBatch) -> tuple[SectionCode, SectionCode]:
        """Both sections with their attention weights (for inspection and tests); float32, autocast off."""
        with torch.autocast(tokens.flat.device.type, enabled=False):
            return self.findings(tokens.findings), self.impression(tokens.impression)

    def forward(self, tokens: TokenBatch) -> EncodedText:
        findings, impression = self.encode_sections(tokens)
        with torch.autocast(tokens.flat.device.type, enabled=False):
            report = self.report_vector(self.fuse(torch.cat([findings.vector, impression.vector], -1)))
        b = len(report)
        return EncodedText(
            report=report,
            words=torch.cat([findings.words.flatten(1, 2), impression.words.flatten(1, 2)], 1),
            word_mask=torch.cat([findings.word_mask.view(b, -1), impression.word_mask.view(b, -1)], 1),
            sentences=torch.cat([findings.sentences, impression.sentences], 1),
            sentence_mask=torch.cat([findings.sentence_mask, impression.sentence_mask], 1),
        )


class FlatEncoder(TextEncoder):
    """ "flat": the paper's "w/o HAE" ablation: one BiLSTM + masked attention over ``tokens.flat``."""

    def __init__(self, cfg: TextEncoder.Config, vocab_size: int):
        super().__init__(cfg, vocab_size)
        self.embedding = _embedding(vocab_size, cfg.embed_dim)
        self.lstm = _bilstm(cfg.embed_dim, cfg.hidden)
        self.attention = AdditiveAttention(2 * cfg.hidden)
        self.fuse = nn.Linear(2 * cfg.hidden, cfg.out_dim, bias=False)
        self.word_dim = 2 * cfg.hidden
        self.sentence_dim = None

    def encode_words(self, tokens: TokenBatch) -> tuple[torch.Tensor, ...]:
        """(report vector before the projection [B, 2H], words [B, T, 2H], mask [B, T], weights [B, T])."""
        with torch.autocast(tokens.flat.device.type, enabled=False):
            lengths = (tokens.flat != 0).sum(-1).cpu()
            out = _encode_rows(self.lstm, self.attention, tokens.flat, lengths, embed=self.embedding)
        return out.context, out.outputs, out.mask, out.weights

    def forward(self, tokens: TokenBatch) -> EncodedText:
        context, words, mask, _ = self.encode_words(tokens)
        with torch.autocast(tokens.flat.device.type, enabled=False):
            report = self.report_vector(self.fuse(context))
        return EncodedText(report=report, words=words, word_mask=mask, sentences=None, sentence_mask=None)


TEXT_ENCODERS: dict[str, type[TextEncoder]] = {
    "hae": HierarchicalEncoder,
    "flat": FlatEncoder,
}


def get_text_encoder(name: str, cfg: TextEncoder.Config, vocab_size: int) -> TextEncoder:
    if name not in TEXT_ENCODERS:
        raise unknown_name("text encoder", name, TEXT_ENCODERS)
    return TEXT_ENCODERS[name](cfg, vocab_size)
