"""PNG plots of a run for the report: training curves from the CSV logs and the latency breakdown."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def read_metrics_csv(path: Path) -> dict[str, list[tuple[float, float]]]:
    """A Lightning ``CSVLogger`` file -> ``{column: [(step, value), ...]}`` for the loss/accuracy columns."""
    series: dict[str, list[tuple[float, float]]] = {}
    with Path(path).open(newline="") as f:
        for row in csv.DictReader(f):
            step = row.get("step")
            if not step:
                continue
            for key, value in row.items():
                if key in ("step", "epoch") or not value or key.startswith("lr-"):
                    continue
                try:
                    v = float(value)
                except ValueError:
                    continue
                if math.isfinite(v):
                    series.setdefault(key, []).append((float(step), v))
    return series


def stage_log_files(stage_log_dir: Path) -> list[Path]:
    """A stage's CSV logs in training order: ``metrics.part1.csv`` ... (runs before a resume), ``metrics.csv``."""
    d = Path(stage_log_dir)
    parts = sorted(d.glob("metrics.part*.csv"), key=lambda p: int(p.stem.removeprefix("metrics.part") or 0))
    return [*parts, *([d / "metrics.csv"] if (d / "metrics.csv").is_file() else [])]


def read_stage_metrics(stage_log_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """All of a stage's logs merged by step; where a resumed run logged a step again, its value wins."""
    merged: dict[str, dict[float, float]] = {}
    for path in stage_log_files(stage_log_dir):
        for key, points in read_metrics_csv(path).items():
            merged.setdefault(key, {}).update(dict(points))
    return {k: sorted(v.items()) for k, v in merged.items()}


def curve_keys(series: Mapping[str, list]) -> tuple[list[str], list[str]]:
    """The columns worth plotting: losses (the total, plus per-objective ones when a stage has several
    objectives) and accuracies (``*acc``); counts, perplexities and learning rates are left out."""
    losses = [k for k in series if k.endswith("loss")]
    per_objective = [k for k in losses if k.count("/") >= 2]
    if len({k.split("/")[1] for k in per_objective}) <= 1:  # one objective: its loss equals the total
        losses = [k for k in losses if k not in per_objective]
    accs = [k for k in series if k.endswith("acc")]
    return sorted(losses), sorted(accs)


def plot_training_curves(logs_dir: Path, stages: list[str], out: Path) -> Path | None:
    """One panel per stage: its losses (left axis) and accuracies (right axis, dashed) against the step; None if
    no stage has a log."""
    found = [(s, d) for s in stages if (d := read_stage_metrics(Path(logs_dir) / s))]
    if not found:
        return None
    plt = _pyplot()
    cols = min(3, len(found))
    rows = math.ceil(len(found) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    for ax, (stage, series) in zip(axes.flat, found, strict=False):
        losses, accs = curve_keys(series)
        handles = []
        for axis, keys, style in ((ax, losses, "-"), (ax.twinx() if accs else None, accs, "--")):
            for name in keys:
                xs, ys = zip(*series[name], strict=True)
                handles += axis.plot(xs, ys, style, color=f"C{len(handles) % 10}", label=name,
                                     marker="o" if len(xs) < 4 else None, markersize=3)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if handles:
            ax.legend(handles=handles, fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(found):]:
        ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_latency(breakdown: Mapping[str, Mapping[str, float]], out: Path) -> Path | None:
    """Horizontal bars of the median and p90 of each latency field (ms); None if there is nothing to plot."""
    if not breakdown:
        return None
    plt = _pyplot()
    names = list(breakdown)
    med = [breakdown[n]["median"] for n in names]
    p90 = [breakdown[n]["p90"] for n in names]
    y = range(len(names))
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    ax.barh([i + 0.2 for i in y], med, height=0.4, label="median")
    ax.barh([i - 0.2 for i in y], p90, height=0.4, label="p90")
    ax.set_yticks(list(y), [n.removesuffix("_ms").replace("_", " ") for n in names], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    ax.legend()
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
