"""A single-codebook vector quantiser with EMA codebook updates and dead-code restarts."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from omnikit.components.codecs.kmeans import kmeans, nearest


def _all_reduce(x: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x)
    return x


class EMAVectorQuantizer(nn.Module):
    """Nearest-code quantiser; the codebook follows EMA cluster means instead of gradients (VQ-VAE-2 style).

    Codes whose EMA usage falls below ``dead_threshold`` are restarted at random encoder outputs of the current
    batch, so no code stays dead. The codebook is first set from the first training batch (random outputs) or
    by ``init_from`` (k-means). Statistics are all-reduced across processes under torch.distributed.
    """

    def __init__(self, codebook_size: int, dim: int, decay: float = 0.99, dead_threshold: float = 1.0) -> None:
        super().__init__()
        self.codebook_size, self.dim, self.decay, self.dead_threshold = codebook_size, dim, decay, dead_threshold
        self.register_buffer("embed", torch.randn(codebook_size, dim))
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def init_from(self, z: Tensor, iters: int = 10, seed: int = 0) -> None:
        """Set the codebook by k-means on vectors ``z`` (N, dim)."""
        centroids, _ = kmeans(z.float(), self.codebook_size, iters=iters, seed=seed)
        self.embed.copy_(centroids)
        self.embed_sum.copy_(centroids)
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    def lookup(self, idx: Tensor) -> Tensor:
        return self.embed[idx]

    def quantize(self, z: Tensor) -> Tensor:
        """(N, dim) -> (N,) nearest code indices."""
        return nearest(z, self.embed)[0]

    @torch.no_grad()
    def _update(self, z: Tensor, idx: Tensor) -> None:
        if not bool(self.initialized):
            self.embed.copy_(z[torch.randint(z.shape[0], (self.codebook_size,), device=z.device)])
            self.embed_sum.copy_(self.embed)
            self.cluster_size.fill_(1.0)
            self.initialized.fill_(True)
            return
        counts = _all_reduce(torch.bincount(idx, minlength=self.codebook_size).to(z.dtype))
        sums = _all_reduce(torch.zeros_like(self.embed).index_add_(0, idx, z))
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + self.codebook_size * 1e-5) * n
        self.embed.copy_(self.embed_sum / smoothed[:, None])
        dead = self.cluster_size < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead:
            pick = torch.randint(z.shape[0], (n_dead,), device=z.device)
            if dist.is_available() and dist.is_initialized():
                dist.broadcast(pick, 0)  # same restart everywhere (z differs per rank, so use rank 0's draw)
            fresh = z[pick]
            if dist.is_available() and dist.is_initialized():
                dist.broadcast(fresh, 0)
            self.embed[dead] = fresh
            self.embed_sum[dead] = fresh * self.dead_threshold
            self.cluster_size[dead] = self.dead_threshold
            self.restarts.add_(n_dead)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z (B, dim, N) -> (straight-through quantised (B, dim, N), indices (B, N), commitment loss)."""
        b, d, n = z.shape
        flat = z.transpose(1, 2).reshape(-1, d)
        if self.training and torch.is_grad_enabled():
            self._update(flat.detach().float(), self.quantize(flat.detach()))
        idx = self.quantize(flat.detach())
        q = self.embed[idx].to(z.dtype)
        commitment = (flat - q.detach()).square().mean()
        q_st = flat + (q - flat).detach()
        return q_st.reshape(b, n, d).transpose(1, 2), idx.reshape(b, n), commitment
