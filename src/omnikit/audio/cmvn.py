"""Global cepstral mean and variance normalisation (CMVN) with JSON stats (``mean_stat``, ``var_stat``,
``frame_num``: per-bin sums, per-bin sums of squares and the frame count)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

VAR_FLOOR = 1e-20


class GlobalCMVN(nn.Module):
    """``x -> (x - mean) * istd`` with ``mean`` and ``istd`` as buffers (saved with the owning module)."""

    def __init__(self, dim: int = 80, mean: Tensor | None = None, istd: Tensor | None = None):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim) if mean is None else mean.detach().float().clone())
        self.register_buffer("istd", torch.ones(dim) if istd is None else istd.detach().float().clone())
        # The raw sums, kept so that save_json round-trips exactly.
        self._stats: tuple[list[float], list[float], float] | None = None

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.istd

    @classmethod
    def from_stats(cls, feat_sum: Tensor, feat_sumsq: Tensor, count: float) -> GlobalCMVN:
        """Build from accumulated per-bin ``sum``, ``sum of squares`` and frame ``count``."""
        if count <= 0:
            raise ValueError("CMVN needs at least one frame (count must be > 0)")
        feat_sum = torch.as_tensor(feat_sum, dtype=torch.float64)
        feat_sumsq = torch.as_tensor(feat_sumsq, dtype=torch.float64)
        mean = feat_sum / count
        var = (feat_sumsq / count - mean**2).clamp_min(VAR_FLOOR)
        cmvn = cls(int(mean.shape[0]), mean.float(), (1.0 / var.sqrt()).float())
        cmvn._stats = (feat_sum.tolist(), feat_sumsq.tolist(), float(count))
        return cmvn

    @classmethod
    def compute(cls, feats: Iterable[Tensor]) -> GlobalCMVN:
        """Accumulate stats over an iterable of ``(T, D)`` feature tensors (float64 sums)."""
        total: Tensor | None = None
        total_sq: Tensor | None = None
        count = 0
        for f in feats:
            f = f.detach().reshape(-1, f.shape[-1]).double()
            if total is None:
                total = torch.zeros(f.shape[1], dtype=torch.float64)
                total_sq = torch.zeros_like(total)
            total += f.sum(0)
            total_sq += (f * f).sum(0)
            count += f.shape[0]
        if total is None or count == 0:
            raise ValueError("CMVN.compute got no feature frames")
        return cls.from_stats(total, total_sq, count)

    def save_json(self, path: str | Path) -> Path:
        """Write ``{"mean_stat", "var_stat", "frame_num"}``. Without accumulated stats, equivalent stats for one
        frame count are synthesised from ``mean``/``istd`` (they reload to the same normalisation)."""
        if self._stats is not None:
            s, sq, n = self._stats
        else:
            mean = self.mean.double()
            var = 1.0 / self.istd.double() ** 2
            s, sq, n = mean.tolist(), (var + mean**2).tolist(), 1.0
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"mean_stat": s, "var_stat": sq, "frame_num": n}))
        return path

    @classmethod
    def load_json(cls, path: str | Path) -> GlobalCMVN:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            return cls.from_stats(torch.tensor(d["mean_stat"]), torch.tensor(d["var_stat"]), float(d["frame_num"]))
        except (OSError, KeyError, ValueError, TypeError) as err:
            raise ValueError(f"{path}: not a CMVN stats file ({err})") from err

    def load_(self, other: GlobalCMVN) -> None:
        """Copy another CMVN's stats into this module's buffers (in place, keeps device)."""
        self.mean.copy_(other.mean)
        self.istd.copy_(other.istd)
        self._stats = other._stats
