"""benchmarks/gpu_bc.py runs on the CPU (the device it finds here) with tiny settings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from gpu_bc import main


def test_gpu_bc_reports_samples_per_second_on_the_present_device(tmp_path, capsys):
    out = tmp_path / "gpu_bc.json"
    result = main(["--device", "cpu", "--steps", "2", "--warmup", "1", "--batch-size", "4",
                   "--frames", "16", "--threads", "1", "--json", str(out),
                   "policy.image_size=16", "policy.channels=[8,16]", "policy.trunk_hidden=[32]"])
    text = capsys.readouterr().out
    for key in ("update_samples_per_s", "bc_step_samples_per_s"):
        assert result[key] > 0
    assert result["batch_size"] == 4 and result["torch"] and result["date"]
    assert json.loads(out.read_text())["device"].startswith("CPU")
    assert "samples/s" in text and "front+wrist 16 px" in text and "grounding=True" in text


def test_bf16_is_refused_on_the_cpu():
    with pytest.raises(SystemExit):
        main(["--device", "cpu", "--precision", "bf16"])
