"""The README's main job, end to end, at the ``tiny`` preset; and its resume behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import pytest

from vla_sim.cli.main import main
from vla_sim.config import ConfigError, load_config
from vla_sim.pipeline import PRESETS, QuickstartConfig, default_config_path

TINY = ["data.episodes=2", "bc.steps=8", "bc.batch_size=16", "ppo.total_steps=32",
        "ppo.n_steps=16", "eval.episodes=2", "eval.videos=1", "eval.render_size=64",
        "eval.splits=[train]"]


def test_packaged_config_loads_and_rejects_unknown_keys(tmp_path: Path) -> None:
    cfg = load_config(QuickstartConfig, default_config_path(), PRESETS["tiny"])
    assert cfg.data.episodes == 4 and cfg.ppo.total_steps == 64
    with pytest.raises(ConfigError, match="bc_steps"):
        load_config(QuickstartConfig, default_config_path(), ["bc_steps=3"])
    with pytest.raises(ValueError, match="unknown env"):
        load_config(QuickstartConfig, default_config_path(), ["env=vla_sim/Fly-v0"])


def test_quickstart_tiny_runs_end_to_end_and_skips_finished_stages(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "| BC |" in printed and "| PPO |" in printed and "report:" in printed
    # the run folder holds every artefact the README promises
    assert (out / "data" / "meta" / "info.json").exists()
    assert (out / "bc" / "last" / "model.safetensors").exists()
    assert any((out / "bc" / "tb").iterdir())
    assert (out / "ppo" / "last" / "model.safetensors").exists()
    for name in ("report.json", "report.html", "report.md"):
        assert (out / "eval" / "ppo" / name).exists()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["results"]) == {"bc", "ppo"}
    videos = summary["results"]["ppo"]["videos"]
    assert videos, "the final policy's evaluation records a video"
    frames = iio.imread(videos[0])
    assert frames.ndim == 4 and frames.shape[0] >= 2
    # a re-run skips every finished stage instead of starting over
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *TINY]) == 0
    again = capsys.readouterr().out
    for stage in ("data", "bc", "ppo"):
        assert f"{stage}: complete, skipping" in again


def test_interrupted_bc_resumes_without_recollecting(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    no_ppo = [*TINY, "ppo.total_steps=0"]
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *no_ppo]) == 0
    capsys.readouterr()
    # simulate an interruption during training: BC not marked done, its last checkpoint kept
    (out / "stages" / "bc" / ".done").unlink()
    (out / "summary.json").unlink()
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *no_ppo]) == 0
    printed = capsys.readouterr().out
    assert "data: complete, skipping" in printed
    assert "bc: resuming" in printed
