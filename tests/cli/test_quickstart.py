"""The README's main job, end to end, at the ``tiny`` preset; and its resume behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import pytest

from vla_sim.cli.main import main
from vla_sim.config import ConfigError, load_config
from vla_sim.pipeline import PRESETS, QuickstartConfig, default_config_path

TINY = ["data.episodes=2", "bc.steps=8", "bc.batch_size=16", "dagger.round_steps=4",
        "ppo.total_env_steps=32",
        "ppo.n_steps=16", "ppo.batch_size=16", "eval.episodes=2", "eval.videos=1", "eval.render_size=64",
        "eval.splits=[train]"]


def test_packaged_config_loads_and_rejects_unknown_keys(tmp_path: Path) -> None:
    cfg = load_config(QuickstartConfig, default_config_path(), PRESETS["tiny"])
    assert cfg.data.episodes == 4 and cfg.ppo.total_env_steps == 64 and cfg.dagger.rounds == 1
    with pytest.raises(ConfigError, match="bc_steps"):
        load_config(QuickstartConfig, default_config_path(), ["bc_steps=3"])
    with pytest.raises(ValueError, match="unknown env"):
        load_config(QuickstartConfig, default_config_path(), ["env=vla_sim/Fly-v0"])


@pytest.mark.slow  # end to end: the whole quickstart, several times
def test_quickstart_tiny_runs_end_to_end_and_skips_finished_stages(tmp_path: Path, capsys,
                                                                  monkeypatch) -> None:
    from vla_sim.agents.training import bc

    bc_frames = []
    real_train_bc = bc.train_bc

    def spy(*args, **kwargs):  # the BC stage's call, then each DAgger round's
        bc_frames.append(kwargs.get("scene_frames"))
        return real_train_bc(*args, **kwargs)

    monkeypatch.setattr(bc, "train_bc", spy)
    out = tmp_path / "run"
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "| BC |" in printed and "| DAgger |" in printed and "| PPO |" in printed
    assert "report:" in printed
    # the run folder holds every artefact the README promises
    info = json.loads((out / "data" / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 2
    from vla_sim.agents.policies import load_policy

    for stage in ("bc", "dagger", "ppo"):
        assert load_policy(out / stage / "last").config.cameras == ["front", "wrist"]
    assert any((out / "bc" / "tb").iterdir())
    report = json.loads((out / "eval" / "ppo" / "report.json").read_text())
    assert [c["episodes"] for c in report["cells"]] == [2]
    assert "success" in (out / "eval" / "ppo" / "report.md").read_text().lower()
    assert "<html" in (out / "eval" / "ppo" / "report.html").read_text().lower()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["results"]) == {"bc", "dagger", "ppo"}
    # DAgger continued from the BC policy on the demonstrations plus its relabelled rollouts
    dagger_data = json.loads((out / "dagger" / "data" / "meta" / "info.json").read_text())
    assert dagger_data["total_episodes"] == 2 + 2
    # the scene frames were rendered once, for BC and DAgger alike
    assert "scene frames: rendering 16" in printed
    assert len(bc_frames) == 2  # the BC stage and the one DAgger round
    assert all(f is not None and len(f.states) == 16 for f in bc_frames)
    assert (out / "dagger" / "scene_frames.npz").read_bytes() == \
        (out / "scene_frames" / "frames.npz").read_bytes()
    assert json.loads((out / "dagger" / "dagger_state.json").read_text())[
        "scene_frames"]["source"] == "given"
    videos = summary["results"]["ppo"]["videos"]
    assert videos, "the final policy's evaluation records a video"
    frames = iio.imread(videos[0])
    assert frames.ndim == 4 and frames.shape[0] >= 2
    # a re-run skips every finished stage instead of starting over
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *TINY]) == 0
    again = capsys.readouterr().out
    for stage in ("data", "bc", "dagger", "ppo"):
        assert f"{stage}: complete, skipping" in again
    assert "scene frames: complete" in again
    # frames lost after they finished: rendered again, the stages trained on them kept
    (out / "scene_frames" / "frames.npz").unlink()
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *TINY]) == 0
    again = capsys.readouterr().out
    assert "no scene frames file; rendering them again" in again
    assert "bc: complete, skipping" in again and (out / "scene_frames" / "frames.npz").is_file()


@pytest.mark.slow  # end to end: the whole quickstart, several times
def test_interrupted_bc_resumes_without_recollecting(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    no_ppo = [*TINY, "ppo.total_env_steps=0"]
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *no_ppo]) == 0
    capsys.readouterr()
    # simulate an interruption during training: BC not marked done, its last checkpoint kept
    (out / "stages" / "bc" / ".done").unlink()
    (out / "summary.json").unlink()
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *no_ppo]) == 0
    printed = capsys.readouterr().out
    assert "data: complete, skipping" in printed
    assert "bc: resuming" in printed


def test_the_stages_read_one_set_of_shared_settings() -> None:
    cfg = load_config(QuickstartConfig, default_config_path(),
                      ["env=vla_sim/PickPlace-v0", "robot=iiwa", "image_size=32", "seed=5",
                       "cameras=[front]"])
    assert cfg.data.env == cfg.ppo.env_id == "vla_sim/PickPlace-v0"
    assert cfg.eval.env_ids == ["vla_sim/PickPlace-v0"]
    assert cfg.data.robot == cfg.ppo.robot == cfg.eval.robot == "iiwa"
    assert cfg.data.image_size == cfg.bc.policy.image_size == cfg.eval.image_size == 32
    assert list(cfg.data.cameras) == cfg.bc.policy.cameras == cfg.eval.cameras == ["front"]
    assert cfg.data.seed == cfg.bc.seed == cfg.ppo.seed == cfg.dagger.bc.seed == 5
    assert cfg.dagger.bc.policy.cameras == ["front"] and cfg.dagger.env == "vla_sim/PickPlace-v0"


@pytest.mark.slow  # end to end: the whole quickstart, several times
def test_a_rerun_with_changed_settings_reruns_the_stages_they_affect(tmp_path: Path,
                                                                     capsys) -> None:
    out = tmp_path / "run"
    no_ppo = [*TINY, "ppo.total_env_steps=0"]
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *no_ppo]) == 0
    capsys.readouterr()
    # evaluation settings changed: data and BC are reused, the evaluation runs again
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *no_ppo,
                 "eval.episodes=3"]) == 0
    printed = capsys.readouterr().out
    assert "data: complete, skipping" in printed and "bc: complete, skipping" in printed
    assert json.loads((out / "summary.json").read_text())[
        "results"]["bc"]["per_split"]["train"]["episodes"] == 3
    # a BC setting changed: BC trains again from scratch (not resumed), data is reused
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *no_ppo,
                 "eval.episodes=3", "bc.lr=0.001"]) == 0
    printed = capsys.readouterr().out
    assert "data: complete, skipping" in printed
    assert "bc: settings changed" in printed and "bc: training" in printed
    # more scene frames: they are rendered again and BC trains again on them
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *no_ppo,
                 "eval.episodes=3", "bc.lr=0.001", "dagger.scene_frames=24"]) == 0
    printed = capsys.readouterr().out
    assert "scene_frames: settings changed" in printed and "scene frames: rendering 24" in printed
    assert "bc: settings changed" in printed and "data: complete, skipping" in printed
    # the env changed: everything runs again and the table names the new env's results
    assert main(["quickstart", "--preset", "tiny", "--out", str(out), *no_ppo,
                 "eval.episodes=3", "bc.lr=0.001", "env=vla_sim/Push-v0"]) == 0
    printed = capsys.readouterr().out
    assert "data: settings changed" in printed and "data: collecting" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env"] == "vla_sim/Push-v0"
    report = json.loads((out / "eval" / "bc" / "report.json").read_text())
    assert {c["env_id"] for c in report["cells"]} == {"vla_sim/Push-v0"}



def test_stage_key_ignores_how_a_stage_runs_but_not_what_it_computes():
    from vla_sim.agents.training.configs import BCConfig
    from vla_sim.pipeline import stage_key

    base = stage_key("bc", BCConfig(), "data")
    assert stage_key("bc", BCConfig(num_threads=7, progress=True), "data") == base
    assert stage_key("bc", BCConfig(steps=17), "data") != base
    assert stage_key("bc", BCConfig(), "other-data") != base
