"""`convlora-geo info --model RUN`: what a trained model is, as text and as JSON, read from its
files (no weights loaded); a model that is not there, or configuration options given as well, is
one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main
from tests.support.cli import refused


def test_info_describes_a_trained_model(
    runs, checkpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    run = runs["sam"]
    adapter = json.loads((run / "adapter.json").read_text())
    assert main(["info", "--model", str(run)]) == 0
    text = capsys.readouterr().out
    sha = adapter["sam_checkpoint_sha256"]
    assert f"model: {run}\n  SAM tiny, adapter lora (rank 3), SAM sees 64 px\n" in text
    assert f"SAM checkpoint: sha256 {sha[:16]}..., trained on {checkpoints['sam']} (there)" in text
    assert "input: 7 bands 1 (OLI_B1), 2 (OLI_B2)" in text
    assert "; SAM's R,G,B = bands 4,3,2\n  windows: 64 px, overlap 0" in text
    names = ", ".join(f"{c['id']} {c['name']}" for c in adapter["classes"])
    assert f"classes: {names}\n" in text
    assert f"best checkpoint: step {adapter['training']['step']}, validation mIoU" in text

    assert main(["info", "--model", str(runs["sam_gone"]), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["classes"] == adapter["classes"] and summary["rgb_bands"] == [4, 3, 2]
    assert summary["sam_checkpoint_found"] is False and summary["sam_checkpoint"]
    assert summary["parameters"]["trainable_params"] < summary["parameters"]["total_params"]
    assert main(["info", "--model", str(runs["sam_gone"])]) == 0
    assert "(not there: pass --sam-checkpoint)" in capsys.readouterr().out
    assert main(["info", "--model", str(runs["base"])]) == 0
    assert "SAM checkpoint: none: the model carries its whole weights" in capsys.readouterr().out


def test_info_refuses_a_missing_model_and_a_configuration_besides(runs, work: Path) -> None:
    refused(work, ["info", "--model", work / "absent"], "absent: model not found")
    refused(
        work,
        ["info", "--model", runs["base"], "--sam", "tiny", "--classes", "3"],
        f"--model {runs['base']} describes a trained model, --sam, --classes a model "
        "configuration: give one or the other",
    )
