"""DAgger: expert labels at the states the mixture visits, beta mixing, aggregation into a copy
of the demonstrations marked relabelled, resume, and config errors named."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from tiny_policy import SMALL

import vla_sim  # noqa: F401  (registers the env ids)
from vla_sim.agents.experts import make_expert
from vla_sim.agents.training import dagger
from vla_sim.agents.training.dagger import (
    DAggerConfig,
    _RolloutJob,
    _run_rollouts,
    dagger_rollout,
    episode_metadata,
    policy_dir,
    relabelled_episodes,
    round_tasks,
    rollout_weights,
    task_counts,
    task_plan,
    task_success,
    train_dagger,
)
from vla_sim.config import ConfigError, load_config
from vla_sim.data.collect import CollectConfig, collect
from vla_sim.data.reader import DatasetReader
from vla_sim.utils.seeding import EVAL_BASE_SEED

DEMOS = 3


def tiny(**overrides) -> DAggerConfig:
    """One round of two Reach rollouts and a few BC steps of a 16 px policy (seconds)."""
    policy = json.dumps({**SMALL, "text_encoder": "hashing"})
    base = {"rounds": 1, "episodes_per_round": 2, "round_steps": 3, "workers": 1,
            "beta0": 0.5, "bc.steps": 4, "bc.batch_size": 8, "bc.warmup_steps": 1,
            "bc.val_every_grad_steps": 2, "bc.checkpoint_every_grad_steps": 100, "bc.log_every_grad_steps": 2,
            "bc.device": "cpu", "bc.tensorboard": False, "bc.num_threads": 1,
            "bc.progress": False}
    base.update(overrides)
    items = [f"{k}={json.dumps(v) if isinstance(v, bool) else v}" for k, v in base.items()]
    return load_config(DAggerConfig, overrides=items + [f"bc.policy={policy}"])


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demos") / "reach"
    collect(CollectConfig(out=str(out), env="Reach", episodes=DEMOS, image_size=16,
                          progress=False))
    return out


@pytest.fixture(scope="module")
def one_round(demos, tmp_path_factory):
    """A finished one-round run, and the demo folder's digest from before it."""
    before = tree_digest(demos)
    run = tmp_path_factory.mktemp("dagger") / "run"
    result = train_dagger(demos, run, tiny())
    return run, result, before


class ConstantLearner:
    """A learner whose action is known, counting the observations it is asked about."""

    action = np.array([0.3, -0.2, 0.1, 1.0], np.float32)

    def __init__(self):
        self.calls = 0

    def act(self, obs, deterministic=True):
        assert "state" in obs and "image" in obs
        self.calls += 1
        return self.action.copy()


def reach_env():
    return gym.make("vla_sim/Reach-v0", image_size=16)


def test_labels_are_the_experts_action_at_every_visited_state(one_round):
    run, _, _ = one_round
    reader = DatasetReader(run / "data")
    checked = 0
    for ep in relabelled_episodes(reader.episodes):
        rec = reader.episode_record(ep)
        labels = reader.episode_arrays(ep)["actions"]
        executed = np.asarray(rec["metadata"]["executed_actions"], np.float32)
        assert len(executed) == len(labels) == rec["length"]
        env = reach_env()
        expert = make_expert(env)
        env.reset(seed=rec["seed"])  # replay the recorded episode with what actually ran
        for label, action in zip(labels, executed):
            np.testing.assert_allclose(expert.act(), label, atol=1e-6)
            env.step(action)
        env.close()
        checked += 1
    assert checked == 2


def test_beta_one_executes_the_expert_and_beta_zero_the_learner():
    env = reach_env()
    expert = make_expert(env)
    learner = ConstantLearner()
    ep = dagger_rollout(env, expert, learner, seed=7, beta=1.0)
    executed = np.asarray(ep.metadata["executed_actions"], np.float32)
    np.testing.assert_array_equal(executed, ep.actions)
    assert ep.metadata["expert_steps"] == ep.length and learner.calls == 0

    ep = dagger_rollout(env, expert, learner, seed=7, beta=0.0)
    executed = np.asarray(ep.metadata["executed_actions"], np.float32)
    np.testing.assert_array_equal(executed, np.tile(ConstantLearner.action, (ep.length, 1)))
    assert ep.metadata["expert_steps"] == 0 and learner.calls == ep.length
    assert not np.allclose(ep.actions, executed)  # the labels are still the expert's
    env.close()


def test_episode_mixing_hands_whole_episodes_to_one_controller():
    env = reach_env()
    expert, learner = make_expert(env), ConstantLearner()
    owners = set()
    for seed in range(6):
        ep = dagger_rollout(env, expert, learner, seed=seed, beta=0.5, mixing="episode")
        assert ep.metadata["expert_steps"] in (0, ep.length)
        owners.add(ep.metadata["expert_steps"] == ep.length)
    assert owners == {True, False}
    env.close()


def test_rollouts_are_appended_to_a_copy_marked_relabelled(one_round, demos):
    run, result, before = one_round
    assert tree_digest(demos) == before  # the demonstrations are never written
    reader = DatasetReader(run / "data")
    assert reader.num_episodes == DEMOS + 2
    assert relabelled_episodes(reader.episodes) == [DEMOS, DEMOS + 1]
    meta = [episode_metadata(e) for e in reader.episodes[DEMOS:]]
    assert [(m["dagger_round"], m["dagger_index"], m["beta"]) for m in meta] == \
        [(0, 0, 0.5), (0, 1, 0.5)]
    demo_frames = sum(int(e["length"]) for e in reader.episodes[:DEMOS])
    (record,) = result.history
    assert record["frames_added"] == reader.num_frames - demo_frames
    assert record["dataset_frames"] == reader.num_frames
    assert 0.0 <= record["rollout_success"] <= 1.0 and record["bc_steps"] == 3
    assert reader.info["vla_sim"]["dagger"]["demo_episodes"] == DEMOS
    assert reader.info["vla_sim"]["dagger"]["relabelled_episodes"] == 2
    for k in (0, 1):
        assert (policy_dir(run, k) / "last" / "model.safetensors").is_file()
    assert (run / "last" / "model.safetensors").is_file()


def test_resume_continues_at_the_next_round(one_round, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(one_round[0], run)
    first = (policy_dir(run, 1) / "last" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="--resume"):
        train_dagger(run / "unused", run, tiny())
    with pytest.raises(ValueError, match=r"beta0: 0\.5 -> 0\.9"):
        train_dagger(run / "unused", run, tiny(rounds=2, beta0=0.9), resume=True)
    result = train_dagger(run / "unused", run, tiny(rounds=2), resume=True)
    assert result.rounds_completed == 2 and [r["round"] for r in result.history] == [0, 1]
    assert result.history[1]["beta"] == 0.25
    reader = DatasetReader(run / "data")
    rounds = [episode_metadata(e).get("dagger_round") for e in reader.episodes]
    assert rounds == [None] * DEMOS + [0, 0, 1, 1]
    assert (policy_dir(run, 1) / "last" / "model.safetensors").read_bytes() == first
    assert (policy_dir(run, 2) / "last" / "model.safetensors").is_file()
    again = train_dagger(run / "unused", run, tiny(rounds=2), resume=True)  # nothing left
    assert again.rounds_completed == 2 and DatasetReader(run / "data").num_episodes == DEMOS + 4


def test_resuming_a_run_that_used_a_retired_option_is_refused_by_name(one_round, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(one_round[0], run)
    saved = json.loads((run / dagger.CONFIG_FILE).read_text())
    (run / dagger.CONFIG_FILE).write_text(json.dumps({**saved, "sample_learner": False}))
    assert train_dagger(run / "unused", run, tiny(), resume=True).rounds_completed == 1
    (run / dagger.CONFIG_FILE).write_text(json.dumps({**saved, "sample_learner": True}))
    with pytest.raises(ValueError, match="sample_learner=True.*removed"):
        train_dagger(run / "unused", run, tiny(rounds=2), resume=True)


def test_interrupted_round_resumes_without_rolling_out_again(demos, tmp_path, monkeypatch):
    real = dagger._train
    calls = []

    def interrupt_round_training(data_dir, run_dir, bc, eval_fn, init, encoder, scene=None):
        calls.append(run_dir.name)
        if run_dir.name == "policy_1" and calls.count("policy_1") == 1:
            raise KeyboardInterrupt
        return real(data_dir, run_dir, bc, eval_fn, init, encoder, scene)

    monkeypatch.setattr(dagger, "_train", interrupt_round_training)
    with pytest.raises(KeyboardInterrupt):
        train_dagger(demos, tmp_path / "run", tiny())
    assert DatasetReader(tmp_path / "run" / "data").num_episodes == DEMOS + 2
    result = train_dagger(demos, tmp_path / "run", tiny(), resume=True)
    assert calls == ["policy_0", "policy_1", "policy_1"]  # policy_0 not retrained
    assert result.rounds_completed == 1 and result.history[0]["episodes"] == 2
    assert DatasetReader(tmp_path / "run" / "data").num_episodes == DEMOS + 2


def test_parallel_rollouts_equal_in_process_ones(one_round, demos):
    run = one_round[0]
    settings = CollectConfig(out=str(demos), env="Reach", image_size=16, progress=False)
    job = _RolloutJob(settings=settings, policy_dir=str(policy_dir(run, 0) / "last"), beta=0.5,
                      mixing="step", round_index=3, seed=11, episodes_per_round=2)
    got: dict[int, list] = {1: [], 2: []}
    for workers in (1, 2):
        _run_rollouts(job, [0, 1], workers, lambda i, enc, w=workers: got[w].append((i, enc)))
    assert [i for i, _ in got[1]] == [i for i, _ in got[2]] == [0, 1]
    for (_, a), (_, b) in zip(got[1], got[2]):
        np.testing.assert_array_equal(a.actions, b.actions)
        assert a.metadata["executed_actions"] == b.metadata["executed_actions"]
        assert a.metadata["seed"] == b.metadata["seed"] and a.metadata["attempt_index"] >= 6


def test_scene_frames_are_rendered_once_given_to_every_round_and_read_back_on_resume(
        demos, tmp_path, monkeypatch):
    seen = []
    real = dagger._train

    def record(data_dir, run_dir, bc, eval_fn, init, encoder, scene=None):
        seen.append((run_dir.name, None if scene is None else len(scene.states)))
        return real(data_dir, run_dir, bc, eval_fn, init, encoder, scene)

    monkeypatch.setattr(dagger, "_train", record)
    cfg = tiny(scene_frames=5, scene_views=2, **{"bc.aux_weight": 1.0})
    train_dagger(demos, tmp_path / "run", cfg)
    assert seen == [("policy_0", 6), ("policy_1", 6)]  # 3 scenes x 2 views
    state = json.loads((tmp_path / "run" / "dagger_state.json").read_text())
    assert state["scene_frames"]["frames"] == 6
    saved = (tmp_path / "run" / dagger.SCENE_FRAMES_FILE).read_bytes()

    import vla_sim.data.scene_frames as scene_frames

    def no_render(*args, **kwargs):
        raise AssertionError("scene frames rendered again on resume")

    monkeypatch.setattr(scene_frames, "render_scene_frames", no_render)
    seen.clear()
    train_dagger(demos, tmp_path / "run", tiny(rounds=2, scene_frames=5, scene_views=2,
                                                **{"bc.aux_weight": 1.0}), resume=True)
    assert seen == [("policy_2", 6)]
    assert (tmp_path / "run" / dagger.SCENE_FRAMES_FILE).read_bytes() == saved


def test_given_scene_frames_are_trained_on_and_saved_instead_of_rendering(
        demos, tmp_path, monkeypatch):
    import vla_sim.data.scene_frames as scene_frames

    settings = dagger._rollout_settings(Path(demos), tiny())
    given = scene_frames.render_scene_frames(settings, scenes=2, views=2, seed=9)
    seen = []
    real = dagger._train

    def record(data_dir, run_dir, bc, eval_fn, init, encoder, scene=None):
        seen.append(scene)
        return real(data_dir, run_dir, bc, eval_fn, init, encoder, scene)

    def no_render(*args, **kwargs):
        raise AssertionError("given scene frames were rendered again")

    monkeypatch.setattr(dagger, "_train", record)
    monkeypatch.setattr(scene_frames, "render_scene_frames", no_render)
    cfg = tiny(scene_frames=4, scene_views=2, **{"bc.aux_weight": 1.0})
    train_dagger(demos, tmp_path / "run", cfg, scene_frames=given)
    assert len(seen) == 2 and all(s is not None and len(s.states) == 4 for s in seen)
    saved = scene_frames.load_scene_frames(tmp_path / "run" / dagger.SCENE_FRAMES_FILE)
    np.testing.assert_array_equal(saved.env_states, given.env_states)
    state = json.loads((tmp_path / "run" / "dagger_state.json").read_text())
    assert state["scene_frames"]["source"] == "given"
    with pytest.raises(ValueError, match="scene_frames is 0"):
        train_dagger(demos, tmp_path / "other", tiny(**{"bc.aux_weight": 1.0}),
                     scene_frames=given)
    with pytest.raises(ValueError, match="aux_weight > 0 or bc.ground_weight > 0"):
        train_dagger(demos, tmp_path / "other", tiny(scene_frames=4, **{
            "bc.aux_weight": 0.0, "bc.ground_weight": 0.0}))
    assert not (tmp_path / "other").exists()  # both refused before anything was written


@pytest.mark.parametrize("key,value", [
    ("rounds", -1), ("episodes_per_round", 0), ("round_steps", 0), ("workers", 0),
    ("beta0", 1.5), ("beta_decay", -0.1), ("mixing", "coin"), ("seed", EVAL_BASE_SEED),
    ("bc.steps_this_run", 5), ("task_weights.stack", -1.0), ("task_weights.lift", 1.0),
    ("task_weights.push", "nan")])
def test_bad_config_values_are_refused_by_name(key, value):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_config(DAggerConfig, overrides=[f"{key}={value}"])


def test_unknown_config_keys_and_demo_seed_reuse_are_refused(demos, tmp_path):
    with pytest.raises(ConfigError, match="epsiodes"):
        load_config(DAggerConfig, overrides=["epsiodes_per_round=3"])
    with pytest.raises(ValueError, match="collection seed"):
        train_dagger(demos, tmp_path / "run", tiny(seed=0))


def test_every_round_reads_instruction_features_from_one_cache_of_the_run_dataset(
        demos, tmp_path, monkeypatch):
    from vla_sim.data.text_cache import read_text_cache

    real, encoders = dagger._train, []

    def spy(data_dir, run_dir, bc, eval_fn, init, encoder, scene=None):
        encoders.append(encoder)
        return real(data_dir, run_dir, bc, eval_fn, init, encoder, scene)

    monkeypatch.setattr(dagger, "_train", spy)
    train_dagger(demos, tmp_path / "run", tiny(rounds=2))
    assert len(encoders) == 3 and all(e is encoders[0] for e in encoders)
    data = tmp_path / "run" / "data"
    instructions = {e["vla_sim/instruction"] for e in DatasetReader(data).episodes}
    cached, problem = read_text_cache(encoders[0].path(), encoders[0].fingerprint)
    assert problem is None and instructions <= set(cached)
    assert encoders[0].missing(sorted(instructions)) == []


# ------------------------------------------------------------------------------ per-task records
def test_weighted_multitask_rounds_play_the_planned_tasks_and_record_them(tmp_path):
    demos = tmp_path / "multi"
    collect(CollectConfig(out=str(demos), env="MultiTask", episodes=4, image_size=16,
                          progress=False))
    cfg = tiny(episodes_per_round=6, **{"task_weights.stack": 2.0, "task_weights.reach": 0.0})
    result = train_dagger(demos, tmp_path / "run", cfg)
    (record,) = result.history
    rows = sorted((episode_metadata(e)["dagger_index"], e["vla_sim/task"])
                  for e in DatasetReader(tmp_path / "run" / "data").episodes
                  if episode_metadata(e).get("dagger_round") == 0)
    played = [t for _, t in rows]
    assert tuple(played) == round_tasks(cfg, rollout_weights(cfg, "MultiTask"), 0)
    assert played.count("stack") == 3 and "reach" not in played and len(played) == 6
    assert record["task_counts"] == {t: played.count(t) for t in set(played)}
    assert set(record["task_success"]) == set(played)
    rows = [{"vla_sim/task": "push", "vla_sim/success": True},
            {"vla_sim/task": "push", "vla_sim/success": False},
            {"vla_sim/task": "stack", "vla_sim/success": False}]
    assert task_success(rows) == {"push": 0.5, "stack": 0.0}
    assert task_counts(rows + [{"vla_sim/success": True}]) == {"": 1, "push": 2, "stack": 1}


def test_task_plan_has_exact_counts_in_a_seeded_order():
    weights = {"reach": 0.1, "push": 0.5, "stack": 0.4}
    plan = task_plan(weights, 7, np.random.default_rng(1))
    assert {t: plan.count(t) for t in weights} == {"reach": 1, "push": 3, "stack": 3}
    assert plan == task_plan(weights, 7, np.random.default_rng(1))
    assert plan != task_plan(weights, 7, np.random.default_rng(2)) or len(set(plan)) == 1


def test_task_weights_fill_unnamed_tasks_with_one_and_need_a_multitask_env():
    cfg = load_config(DAggerConfig, overrides=["task_weights.stack=3", "task_weights.push=0"])
    weights = rollout_weights(cfg, "MultiTask")
    assert weights == pytest.approx({"reach": 0.2, "pick_place": 0.2, "stack": 0.6})
    assert rollout_weights(load_config(DAggerConfig), "MultiTask") is None
    assert round_tasks(load_config(DAggerConfig), None, 0) is None
    with pytest.raises(ValueError, match="multi-task env"):
        rollout_weights(cfg, "Reach")
    none_left = load_config(DAggerConfig, overrides=[f"task_weights.{t}=0" for t in
                                                     ("reach", "push", "pick_place", "stack")])
    with pytest.raises(ValueError, match="no task"):
        rollout_weights(none_left, "MultiTask")


def test_task_weights_on_a_single_task_env_are_refused_before_anything_is_written(demos,
                                                                                  tmp_path):
    with pytest.raises(ValueError, match="multi-task env"):
        train_dagger(demos, tmp_path / "run", tiny(**{"task_weights.stack": 2.0}))
    assert not (tmp_path / "run").exists()


def test_a_rollout_told_its_task_plays_it_and_records_it():
    env = gym.make("vla_sim/MultiTask-v0", image_size=16)
    expert = make_expert(env)
    for task in ("stack", "push"):
        ep = dagger_rollout(env, expert, ConstantLearner(), seed=21, beta=0.5, task=task)
        assert ep.metadata["task"] == task
    env.close()


@pytest.mark.parametrize("level", ["", "medium"])
def test_scene_frames_are_rendered_at_scene_randomization_or_the_rollouts_level(
        demos, tmp_path, monkeypatch, level):
    import vla_sim.data.scene_frames as scene_frames

    settings = dagger._rollout_settings(Path(demos), tiny())
    real, used = scene_frames.render_scene_frames, []

    def render(settings, *args, **kwargs):
        used.append(settings.randomization)
        return real(settings, *args, **kwargs)

    monkeypatch.setattr(scene_frames, "render_scene_frames", render)
    cfg = tiny(scene_frames=2, scene_views=2, **({"scene_randomization": level} if level else {}))
    (tmp_path / "run").mkdir()
    frames = dagger._scene_frames(tmp_path / "run", settings, cfg, {})
    assert used == [level or settings.randomization] and len(frames.states) == 2


def test_an_unknown_scene_randomization_is_named():
    with pytest.raises(ValueError, match="scene_randomization.*extreme"):
        tiny(scene_randomization="extreme")


def test_rollouts_and_scene_frames_keep_the_demonstrations_same_colour_distractors(
        demos, tmp_path):
    """The option shapes the whole training distribution: DAgger's rollouts (and the scene
    frames rendered with their settings) inherit it from the dataset it was collected with."""
    twins = tmp_path / "twins"
    collect(CollectConfig(out=str(twins), env="Reach", episodes=1, image_size=16,
                          progress=False, same_color_distractor=1.0))
    assert dagger._rollout_settings(twins, tiny()).same_color_distractor == 1.0
    assert dagger._rollout_settings(Path(demos), tiny()).same_color_distractor == 0.0


def test_demonstrations_of_an_earlier_expert_revision_are_not_relabelled(tmp_path):
    """DAgger labels with today's expert: on demonstrations recorded by an earlier behaviour
    of it the two would contradict each other, so the run is refused by name."""
    from vla_sim.data import format as fmt

    old = tmp_path / "old"
    collect(CollectConfig(out=str(old), env="Reach", episodes=1, image_size=16, progress=False))
    assert dagger._rollout_settings(old, tiny()).identity()["expert_revision"] == "reach-cone"
    info = json.loads((old / fmt.INFO_PATH).read_text())
    del info["vla_sim"]["collect"]["expert_revision"]
    (old / fmt.INFO_PATH).write_text(json.dumps(info))
    with pytest.raises(ValueError, match="earlier version of the expert"):
        dagger._rollout_settings(old, tiny())
