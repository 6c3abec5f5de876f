"""``omnikit run RECIPE --dry-run``: build every part on the meta device and print who trains what, per stage."""

from __future__ import annotations

from omegaconf import DictConfig

from omnikit.model.build import build_model, count_parameters
from omnikit.training.freezing import select_trainable
from omnikit.training.stages import build_objectives, frozen_slots, stage_config


def human(n: int) -> str:
    if n == 0:
        return "-"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def dry_run_report(cfg: DictConfig, schedule: list[str]) -> str:
    """A per-slot parameter table: total size, then the parameters each stage trains (``-`` = frozen).

    Builds with no weights (``device="meta"``; a part that must read real weights, a tokenizer, is loaded), builds every stage's objectives and checks every ``trainable``
    pattern, so a recipe that passes a dry run wires up at training time.
    """
    model = build_model(cfg, device="meta")
    slots = list(model.keys())
    per_stage: dict[str, dict[str, int]] = {}
    for name in schedule:
        stage = stage_config(cfg, name)
        build_objectives(stage.get("objectives"))
        selected = set(select_trainable(model, list(stage.get("trainable") or []), frozen_slots(cfg)))
        counts = dict.fromkeys(slots, 0)
        for pname, p in model.named_parameters():
            if pname in selected:
                counts[pname.split(".", 1)[0]] += p.numel()
        per_stage[name] = counts

    header = ["slot", "component", "params", *schedule]
    rows = []
    for slot in slots:
        comp = str(cfg.model[slot].name)
        rows.append([slot, comp, human(count_parameters(model[slot])),
                     *(human(per_stage[s][slot]) for s in schedule)])
    total = count_parameters(model)
    rows.append(["total", "", human(total), *(human(sum(per_stage[s].values())) for s in schedule)])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    loaded = list(getattr(model, "built_with_weights", []))
    where = "built on the meta device (no weights" + (f"; loaded for real: {', '.join(loaded)}" if loaded else "") + ")"
    lines = [f"recipe {cfg.get('name', '?')}: {where}; trainable parameters per stage",
             "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)
