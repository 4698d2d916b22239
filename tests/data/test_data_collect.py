"""`collect`: worker-independent, resumable without loss or duplication, refuses changed settings."""

from __future__ import annotations

import json

import gymnasium
import numpy as np
import pytest
import vla_fake_env
from vla_fake_env import ENV_ID, EXPERT

from vla_sim.data import open_dataset
from vla_sim.data.collect import (
    CollectConfig,
    collect,
    executed_actions,
    rollout_episode,
)
from vla_sim.data.writer import frame_sha256


def cfg(out, **kw) -> CollectConfig:
    base = dict(out=str(out), env=ENV_ID, expert=EXPERT, episodes=4, image_size=32, progress=False)
    base.update(kw)
    return CollectConfig(**base)


def content(root):
    ds = open_dataset(root)
    arrays = ds.low_dim_arrays()
    return [e["vla_sim/attempt_index"] for e in ds.episodes], arrays["observation.state"], arrays["action"]


def test_resume_extends_without_loss_or_duplication(tmp_path):
    r1 = collect(cfg(tmp_path / "a", episodes=2))
    assert r1.successes == 2 and r1.reached_target
    r2 = collect(cfg(tmp_path / "a", episodes=4))  # same settings, larger N: continues
    assert r2.successes == 4 and r2.attempts_this_run < r2.attempts
    r3 = collect(cfg(tmp_path / "a", episodes=4))  # nothing left to do
    assert r3.attempts_this_run == 0
    once = collect(cfg(tmp_path / "b", episodes=4))
    attempts_a, states_a, actions_a = content(tmp_path / "a")
    attempts_b, states_b, actions_b = content(tmp_path / "b")
    assert attempts_a == attempts_b and len(set(attempts_a)) == 4
    np.testing.assert_array_equal(states_a, states_b)
    np.testing.assert_array_equal(actions_a, actions_b)
    assert once.attempts == r2.attempts


def test_interrupted_collection_resumes(tmp_path, monkeypatch):
    import vla_sim.data.collect as collect_mod

    real = collect_mod._run_attempt
    calls = {"n": 0}

    def dying(attempt):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed mid-run
        return real(attempt)

    monkeypatch.setattr(collect_mod, "_run_attempt", dying)
    with pytest.raises(KeyboardInterrupt):
        collect(cfg(tmp_path / "a", episodes=3))
    monkeypatch.setattr(collect_mod, "_run_attempt", real)
    partial = open_dataset(tmp_path / "a").num_episodes
    assert 0 < partial < 3
    collect(cfg(tmp_path / "a", episodes=3))
    collect(cfg(tmp_path / "b", episodes=3))
    assert content(tmp_path / "a")[0] == content(tmp_path / "b")[0]


def test_two_workers_give_the_same_dataset(tmp_path):
    collect(cfg(tmp_path / "one", episodes=3, workers=1))
    collect(cfg(tmp_path / "two", episodes=3, workers=2))
    a, b = content(tmp_path / "one"), content(tmp_path / "two")
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])


def test_resume_with_different_settings_is_refused(tmp_path):
    collect(cfg(tmp_path / "a", episodes=2))
    with pytest.raises(ValueError, match=r"noise: dataset has 0.0, command gives 0.1"):
        collect(cfg(tmp_path / "a", episodes=2, noise=0.1))


def test_keep_failures_stores_failed_attempts(tmp_path):
    r = collect(cfg(tmp_path / "a", episodes=3, keep_failures=True))
    ds = open_dataset(tmp_path / "a")
    flags = [e["vla_sim/success"] for e in ds.episodes]
    assert sum(flags) == 3 and len(flags) == r.attempts > 3
    assert [e["vla_sim/attempt_index"] for e in ds.episodes] == list(range(r.attempts))


def test_attempt_cap_stops_collection(tmp_path):
    r = collect(cfg(tmp_path / "a", episodes=50, max_attempts=3))
    assert r.attempts == 3 and not r.reached_target


def test_replaying_recorded_actions_reproduces_the_episode(tmp_path):
    collect(cfg(tmp_path / "a", episodes=2, noise=0.2))
    ds = open_dataset(tmp_path / "a")
    env = gymnasium.make(ENV_ID, image_size=32)
    for i in range(ds.num_episodes):
        rec, arr = ds.episode_record(i), ds.episode_arrays(i)
        obs, info = env.reset(seed=rec["seed"], options={"randomization": rec["randomization"]})
        assert frame_sha256(obs["image"]) == rec["first_frame_sha256"]
        assert obs["instruction"] == rec["instruction"]
        for action in executed_actions(arr["actions"], rec["seed"], 0.2):
            obs, _, terminated, truncated, info = env.step(action)
        assert info["is_success"] == rec["success"] is True
    env.close()


def test_rollout_records_obs_before_action(tmp_path):
    env = gymnasium.make(ENV_ID, image_size=32, cameras=("front", "wrist"))
    ep = rollout_episode(env, vla_fake_env.make_fake_expert(env), seed=3, cameras=("front", "wrist"))
    assert ep.images["wrist"].shape == (ep.length, 32, 32, 3)
    np.testing.assert_array_equal(ep.states[0][:3], 0.0)  # reset state
    assert ep.dones[-1] and not ep.dones[:-1].any()


def test_cli_collect_and_dataset_info(tmp_path, capsys):
    from vla_sim.cli.main import main

    out = tmp_path / "cli"
    rc = main(["collect", "--env", ENV_ID, "--expert", EXPERT, "--episodes", "2", "--image-size", "32",
               "--out", str(out), "--no-progress"])
    assert rc == 0
    rc = main(["dataset", "info", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "episodes  2" in text and "front 32x32" in text and "valid     yes" in text
    rc = main(["dataset", "info", str(out), "--json"])
    assert json.loads(capsys.readouterr().out)["successful_episodes"] == 2
    (out / "meta/stats.json").unlink()
    assert main(["dataset", "info", str(out)]) == 2
    assert "stats.json: missing" in capsys.readouterr().err


def test_datasets_record_the_revision_of_their_tasks_default_expert():
    """A dataset of a task whose default expert changed behaviour names the revision, so the
    new expert never extends demonstrations of the old one."""
    def identity(**kw):
        return CollectConfig(out="x", **kw).identity()

    assert identity(env="Reach")["expert_revision"] == "reach-cone"
    assert identity(env="MultiTask")["expert_revision"] == "reach-cone"  # holds Reach episodes
    assert "expert_revision" not in identity(env="PickPlace")
    assert "expert_revision" not in identity(
        env="Reach", expert="vla_sim.agents.experts:make_gated_expert")


def test_resuming_a_dataset_of_an_earlier_expert_revision_is_refused(tmp_path):
    from vla_sim.data import format as fmt

    out = tmp_path / "reach"
    collect(CollectConfig(out=str(out), env="Reach", episodes=1, image_size=16, progress=False))
    state_path = out / fmt.COLLECT_STATE_PATH
    state = json.loads(state_path.read_text())
    del state["config"]["expert_revision"]  # as recorded before the revision existed
    state_path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="expert_revision: dataset has None, command gives "
                                         "'reach-cone'"):
        collect(CollectConfig(out=str(out), env="Reach", episodes=2, image_size=16,
                              progress=False))
