"""``evaluate_run`` on a trained smoke run (``omnikit run recipes/smoke.yaml --run-dir runs/smoke``), if one exists.

Set ``OMNIKIT_SMOKE_RUN`` to use another run directory. The smoke models are tiny and barely trained: the
numbers mean nothing, the point is that every section runs on real stage checkpoints without crashing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = Path(os.environ.get("OMNIKIT_SMOKE_RUN", ROOT / "runs" / "smoke"))
STAGES = ["input_1_ctc", "input_2_align", "input_3_dialogue", "output_1_codec", "output_2_decoder", "output_3_prefix"]


@pytest.mark.slow
@pytest.mark.skipif(not all((RUN / "stages" / s / "done.json").is_file() for s in STAGES),
                    reason=f"no finished smoke run at {RUN}")
def test_evaluate_smoke_run(tmp_path: Path):
    from omnikit.evaluation.report import evaluate_run

    metrics = evaluate_run(RUN, tmp_path / "eval", limit=2)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["parts"] == metrics["parts"] and metrics["asr"]
    assert set(metrics["cost"]["stages"]) == set(STAGES)
    assert (tmp_path / "eval" / "training_curves.png").is_file()
    assert (tmp_path / "eval" / "demo" / "answer.wav").is_file()
    assert "## Cost" in (tmp_path / "eval" / "report.md").read_text()
