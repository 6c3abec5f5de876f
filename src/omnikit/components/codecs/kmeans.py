"""k-means in torch (k-means++ seeding, Lloyd iterations, empty clusters re-seeded): codebook initialisation."""

from __future__ import annotations

import torch
from torch import Tensor


def nearest(x: Tensor, centroids: Tensor, block: int = 8192) -> tuple[Tensor, Tensor]:
    """Index of and squared distance to the nearest centroid for each row of ``x`` (N, D); blocked for memory."""
    c2 = (centroids * centroids).sum(-1)
    idx, dist = [], []
    for s in range(0, x.shape[0], block):
        xb = x[s : s + block]
        d = (xb * xb).sum(-1, keepdim=True) - 2.0 * xb @ centroids.T + c2
        m, i = d.min(-1)
        idx.append(i)
        dist.append(m.clamp_min(0))
    if not idx:
        return torch.zeros(0, dtype=torch.long, device=x.device), torch.zeros(0, device=x.device)
    return torch.cat(idx), torch.cat(dist)


def kmeans_pp_init(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding: each new centroid is drawn with probability proportional to squared distance."""
    n, dev = x.shape[0], x.device
    first = int(torch.randint(n, (1,), generator=generator, device=dev))
    centroids = [x[first]]
    d2 = ((x - x[first]) ** 2).sum(-1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:
            j = int(torch.randint(n, (1,), generator=generator, device=dev))
        else:
            j = int(torch.multinomial(d2 / total, 1, generator=generator))
        centroids.append(x[j])
        d2 = torch.minimum(d2, ((x - x[j]) ** 2).sum(-1))
    return torch.stack(centroids)


def kmeans(x: Tensor, k: int, iters: int = 20, seed: int = 0, tol: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Fit ``k`` centroids to ``x`` (N, D). Returns ``(centroids (k, D), mean squared error per vector)``.

    With fewer points than centroids, the extra centroids are jittered copies of random points, so every
    code still decodes to something plausible.
    """
    x = x.float()
    g = torch.Generator(device=x.device).manual_seed(seed)
    n, d = x.shape
    if n < k:
        pick = torch.randint(n, (k - n,), generator=g, device=x.device)
        centroids = torch.cat([x, x[pick] + 1e-3 * torch.randn(k - n, d, generator=g, device=x.device)])
        return centroids, torch.zeros(())
    centroids = kmeans_pp_init(x, k, g)
    prev = float("inf")
    err = torch.zeros(())
    for _ in range(iters):
        idx, dist = nearest(x, centroids)
        err = dist.mean()
        sums = torch.zeros_like(centroids).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=k).to(x.dtype)
        alive = counts > 0
        centroids = torch.where(alive[:, None], sums / counts.clamp_min(1)[:, None], centroids)
        dead = int((~alive).sum())
        if dead:  # re-seed empty clusters at the worst-served points
            worst = dist.topk(dead).indices
            centroids[~alive] = x[worst]
        if prev - float(err) <= tol * max(prev, 1e-12) and not dead:
            break
        prev = float(err)
    return centroids, err
