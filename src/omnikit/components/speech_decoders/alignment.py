"""Token-to-frame alignment for duration-based speech decoders: a learned monotonic aligner, Viterbi durations.

After "One TTS Alignment To Rule Them All" (Badlani et al., arXiv 2108.10447), written from the paper: a
soft alignment ``p(token n | frame t)`` from the distance between a text key and a frame query, trained with the
forward-sum (CTC) likelihood of the monotonic token order, sharpened by a static beta-binomial prior; the hard
alignment is the most likely monotonic path (Viterbi), whose run lengths are the per-token durations. Every
token gets at least one frame, and the durations of an item sum to its frame count exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NEG = -1e4
"""Log-probability of impossible cells (finite, so no inf - inf = NaN)."""


def padding_mask(lens: Tensor, length: int) -> Tensor:
    """(B,) valid lengths -> (B, length) bool, True at valid positions."""
    return torch.arange(length, device=lens.device)[None, :] < lens[:, None]


def beta_binomial_log_prior(text_lens: Tensor, frame_lens: Tensor, n: int, t: int, scale: float = 1.0) -> Tensor:
    """(B, t, n) log prior of token ``k`` at frame ``j``: BetaBinomial(N-1, s*j, s*(T+1-j)) over k = 0..N-1.

    It puts frame ``j`` near token ``(j / T) * N``, a soft diagonal that lets the aligner start from a sensible
    path before it has learned anything. Invalid cells are :data:`NEG`.
    """
    dev = text_lens.device
    nb = (text_lens - 1).clamp(min=0).to(torch.float32)[:, None, None]  # binomial n
    tb = frame_lens.to(torch.float32)[:, None, None]
    k = torch.arange(n, device=dev, dtype=torch.float32)[None, None, :]
    j = torch.arange(1, t + 1, device=dev, dtype=torch.float32)[None, :, None]
    a, b = scale * j, (scale * (tb + 1 - j)).clamp(min=1e-3)
    lg = torch.lgamma
    nk = (nb - k).clamp(min=0)
    log_choose = lg(nb + 1) - lg(k + 1) - lg(nk + 1)
    log_beta = lg(k + a) + lg(nk + b) - lg(nb + a + b) - (lg(a) + lg(b) - lg(a + b))
    valid = (k <= nb) & (j <= tb)
    return torch.where(valid, log_choose + log_beta, torch.full_like(log_beta, NEG))


def forward_sum_loss(log_probs: Tensor, text_lens: Tensor, frame_lens: Tensor, blank_logprob: float = -1.0) -> Tensor:
    """Negative log-likelihood, per token, of all monotonic paths through tokens 1..N (CTC with a blank).

    ``log_probs``: (B, T, N) unnormalised token log-scores per frame (padding anywhere is ignored).
    """
    b, t, n = log_probs.shape
    valid = padding_mask(text_lens, n)[:, None, :]
    x = log_probs.masked_fill(~valid, NEG)
    x = F.pad(x, (1, 0), value=blank_logprob)  # index 0 = blank
    x = F.log_softmax(x.float(), dim=-1)
    targets = torch.arange(1, n + 1, device=x.device).expand(b, n)
    return F.ctc_loss(x.transpose(0, 1), targets, frame_lens, text_lens, blank=0, reduction="mean",
                      zero_infinity=True)


def uniform_durations(weights: Tensor, text_lens: Tensor, frame_lens: Tensor) -> Tensor:
    """Split each item's frames over its tokens in proportion to ``weights`` (B, N), largest remainder first.

    Sums are exact. Every token gets at least one frame when an item has at least as many frames as tokens.
    """
    b, n = weights.shape
    valid = padding_mask(text_lens, n)
    w = torch.where(valid, weights.float().clamp(min=1e-3), torch.zeros_like(weights, dtype=torch.float32))
    frames = frame_lens.to(torch.float32)[:, None]
    floor1 = (frame_lens >= text_lens)[:, None] & valid  # at least one frame each, where there is room
    base = floor1.long()
    rest = (frames - base.sum(1, keepdim=True)).clamp(min=0)
    share = w / w.sum(1, keepdim=True).clamp(min=1e-6) * rest
    d = base + share.floor().long()
    left = (frame_lens - d.sum(1)).clamp(min=0)
    frac = torch.where(valid, share - share.floor(), torch.full_like(share, -1.0))
    order = frac.argsort(dim=1, descending=True).argsort(dim=1)  # rank of each token's remainder
    d = d + (order < left[:, None]).long() * valid.long()
    return d


@torch.no_grad()
def viterbi_durations(log_probs: Tensor, text_lens: Tensor, frame_lens: Tensor) -> Tensor:
    """Durations (B, N) of the most likely monotonic alignment: frame 0 on token 0, each next frame on the same
    or the next token, the last valid frame on the last valid token. Items with fewer frames than tokens fall
    back to :func:`uniform_durations` (some tokens then get zero frames)."""
    b, t, n = log_probs.shape
    dev = log_probs.device
    lp = log_probs.float().clamp(min=NEG).masked_fill(~padding_mask(text_lens, n)[:, None, :], NEG)
    # unreachable cells are -inf (not NEG): a confident aligner's valid paths can score below any finite floor
    dp = torch.full((b, n), -torch.inf, device=dev)
    dp[:, 0] = lp[:, 0, 0]
    advanced = torch.zeros(b, t, n, dtype=torch.bool, device=dev)
    pad = torch.full((b, 1), -torch.inf, device=dev)
    for j in range(1, t):
        move = torch.cat([pad, dp[:, :-1]], dim=1)
        adv = move > dp
        advanced[:, j] = adv
        dp = torch.where(adv, move, dp) + lp[:, j]
    rows = torch.arange(b, device=dev)
    pos = (text_lens - 1).clamp(min=0)
    durations = torch.zeros(b, n, dtype=torch.long, device=dev)
    for j in range(t - 1, -1, -1):
        active = j < frame_lens
        durations[rows[active], pos[active]] += 1
        pos = pos - (advanced[rows, j, pos] & active).long()
    short = frame_lens < text_lens
    if short.any():
        durations[short] = uniform_durations(torch.ones_like(durations[short]), text_lens[short], frame_lens[short])
    return durations


class MonotonicAligner(nn.Module):
    """Soft token-vs-frame alignment: ``-||key(token) - query(frame)||^2`` scores, log-softmax over the tokens,
    plus the beta-binomial prior. Keys read the frozen text embeddings (local context through a conv), queries
    the target codec tokens (their own embedding table and convs). Used in training only."""

    def __init__(self, cond_dim: int, codebook_size: int, dim: int, kernel: int = 3, prior_scale: float = 1.0) -> None:
        super().__init__()
        self.prior_scale = prior_scale
        self.frame_embed = nn.Embedding(codebook_size, dim)
        self.key = nn.Sequential(
            nn.Conv1d(cond_dim, dim, kernel, padding=kernel // 2), nn.ReLU(), nn.Conv1d(dim, dim, 1)
        )
        self.query = nn.Sequential(
            nn.Conv1d(dim, dim, kernel, padding=kernel // 2), nn.ReLU(), nn.Conv1d(dim, dim, 1), nn.ReLU(),
            nn.Conv1d(dim, dim, 1),
        )
        self.scale = dim**-0.5

    def forward(self, text_emb: Tensor, text_lens: Tensor, tokens: Tensor, token_lens: Tensor) -> Tensor:
        """Log-posterior of each token given each frame, times the prior: (B, T, N) float32."""
        n, t = text_emb.shape[1], tokens.shape[1]
        text_valid = padding_mask(text_lens, n)
        frame_valid = padding_mask(token_lens, t)
        keys = self.key((text_emb * text_valid[..., None]).transpose(1, 2)).float()  # (B, D, N)
        frames = self.frame_embed(tokens.clamp(min=0, max=self.frame_embed.num_embeddings - 1))
        queries = self.query((frames * frame_valid[..., None]).transpose(1, 2)).float()  # (B, D, T)
        dist = (queries[:, :, :, None] - keys[:, :, None, :]).pow(2).sum(1)  # (B, T, N)
        log_post = F.log_softmax((-self.scale * dist).masked_fill(~text_valid[:, None, :], NEG), dim=-1)
        if self.prior_scale > 0:
            log_post = log_post + beta_binomial_log_prior(text_lens, token_lens, n, t, self.prior_scale)
        return log_post
