"""Counterfactual labels: the same frame under an instruction naming another object of the scene,
labelled by the expert for that instruction; recorded by collect and DAgger, trained on by BC."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_bc import POLICY, synthetic_demos
from test_dagger import tiny

import vla_sim  # noqa: F401  (registers the env ids)
from vla_sim.agents.experts import make_expert
from vla_sim.agents.policies.config import VLAPolicyConfig
from vla_sim.agents.training.bc import BCConfig, _Batches, batch_sampler, train_bc
from vla_sim.agents.training.dagger import relabelled_episodes, train_dagger
from vla_sim.data.collect import CollectConfig, collect, rollout_episode
from vla_sim.data.demos import DemoArrays
from vla_sim.data.reader import DatasetReader
from vla_sim.data.torch_dataset import VLADataset
from vla_sim.data.writer import LeRobotDatasetWriter
from vla_sim.envs.goal_state import GOAL_STATE_LAYOUT
from vla_sim.language.encoder import HashingTextEncoder
from vla_sim.language.instructions import HELDOUT_COMBOS, allowed_combo


@pytest.fixture(scope="module")
def cf_demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("cf") / "reach"
    collect(CollectConfig(out=str(out), env="Reach", episodes=3, image_size=16,
                          counterfactual=True, progress=False))
    return out


def _check_episode(reader: DatasetReader, ep: int, executed: np.ndarray | None = None) -> None:
    """Replays episode ``ep`` and checks its counterfactual labels step by step."""
    rec = reader.episode_record(ep)
    arrays = reader.episode_arrays(ep)
    cf = rec["metadata"]["counterfactual"]
    roles = rec["metadata"]["roles"]
    assert cf["roles"]["object"] != roles["object"]
    env = gym.make("vla_sim/Reach-v0", image_size=16)
    expert = make_expert(env)
    env.reset(seed=rec["seed"])
    task = env.unwrapped.task
    actions = arrays["actions"] if executed is None else executed
    for t, action in enumerate(actions):
        np.testing.assert_allclose(expert.label_for(cf["roles"]),
                                   arrays["counterfactual_actions"][t], atol=1e-6)
        np.testing.assert_allclose(arrays["counterfactual_env_states"][t][
            GOAL_STATE_LAYOUT["object_xyz"]], task.position(cf["roles"]["object"]), atol=1e-5)
        env.step(action)
    env.close()


def test_counterfactual_labels_are_the_experts_action_for_the_other_object(cf_demos):
    reader = DatasetReader(cf_demos)
    for ep in range(reader.num_episodes):
        _check_episode(reader, ep)
        arrays = reader.episode_arrays(ep)
        # the instruction changed what the expert does at the first frame already
        assert np.abs(arrays["actions"][0] - arrays["counterfactual_actions"][0]).max() > 0.1


def test_dagger_rollouts_of_a_counterfactual_dataset_record_them_too(cf_demos, tmp_path):
    run = tmp_path / "run"
    train_dagger(cf_demos, run, tiny(**{"bc.counterfactual_prob": 0.5}))
    reader = DatasetReader(run / "data")
    eps = relabelled_episodes(reader.episodes)
    assert len(eps) == 2
    for ep in eps:
        executed = np.asarray(reader.episode_record(ep)["metadata"]["executed_actions"],
                              np.float32)
        _check_episode(reader, ep, executed)


def test_counterfactual_never_names_a_held_out_pair_in_the_train_split():
    env = gym.make("vla_sim/Reach-v0", image_size=16)
    env.reset(seed=0)
    task, instance = env.unwrapped.task, env.unwrapped.instance
    for seed in range(30):
        cf = task.counterfactual_instance(instance, np.random.default_rng(seed))
        named = next(o for o in cf.objects if o.name == cf.roles["object"])
        assert allowed_combo(named.color, named.shape, "train", target=True)
        assert cf.objects == instance.objects and cf.roles["object"] != instance.roles["object"]
    # a scene whose only other objects are held-out pairs has no counterfactual
    held = [o for o in instance.objects if o.name != instance.roles["object"]]
    color, shape = sorted(HELDOUT_COMBOS)[0]
    fake = dataclasses.replace(instance, objects=tuple(
        o if o.name == instance.roles["object"] else dataclasses.replace(o, color=color,
                                                                          shape=shape)
        for o in instance.objects))
    assert held and task.counterfactual_instance(fake, np.random.default_rng(0)) is None
    env.close()


def test_an_episode_without_a_counterfactual_stores_its_own_labels_and_no_instruction(tmp_path):
    env = gym.make("vla_sim/Reach-v0", image_size=16)
    ep = rollout_episode(env, make_expert(env), seed=3)  # recorded without counterfactuals
    env.close()
    ep.metadata["counterfactual"] = {"instruction": "stale"}  # dropped with the missing labels
    writer = LeRobotDatasetWriter(tmp_path / "ds", fps=20, robot_type="panda", cameras=("front",),
                                  image_size=16, env_state_dim=ep.env_states.shape[1],
                                  counterfactual=True)
    writer.add_episode(ep)
    data = DemoArrays.from_dataset(VLADataset(tmp_path / "ds"))
    assert not data.has_counterfactuals
    np.testing.assert_array_equal(data.counterfactual_index, -1)
    np.testing.assert_array_equal(data.counterfactual_actions, data.actions)
    assert data.instructions == [ep.instruction]


def test_labels_without_their_instruction_are_refused(tmp_path):
    env = gym.make("vla_sim/Reach-v0", image_size=16)
    ep = rollout_episode(env, make_expert(env), seed=3, counterfactual=True)
    env.close()
    del ep.metadata["counterfactual"]
    writer = LeRobotDatasetWriter(tmp_path / "ds", fps=20, robot_type="panda", cameras=("front",),
                                  image_size=16, env_state_dim=ep.env_states.shape[1],
                                  counterfactual=True)
    with pytest.raises(ValueError, match="counterfactual"):
        writer.add_episode(ep)
    assert writer.num_episodes == 0 and writer.tasks == {}


def _with_counterfactuals(data: DemoArrays) -> DemoArrays:
    """Synthetic demos whose counterfactual is the other instruction with the negated action."""
    other = 1 - data.instruction_index
    return dataclasses.replace(data, counterfactual_index=other,
                               counterfactual_actions=-data.actions)


def _batches(data: DemoArrays, prob: float) -> tuple[_Batches, BCConfig, dict]:
    cfg = BCConfig(batch_size=16, policy=VLAPolicyConfig(**POLICY, text_encoder="hashing"),
                   counterfactual_prob=prob)
    enc = HashingTextEncoder()
    feats = enc.features(data.instructions, cfg.policy.max_tokens)
    text = {"instruction_embedding": torch.from_numpy(feats["instruction_embedding"])}
    return _Batches(data, text, cfg.policy, torch.device("cpu"), counterfactual_prob=prob), cfg, text


def test_batches_train_on_the_counterfactual_label_and_its_instruction():
    data = _with_counterfactuals(synthetic_demos())
    batches, cfg, text = _batches(data, 1.0)
    ids = np.arange(len(data.states))
    obs, actions, _ = batches.get_with_shifts(ids, None, labels=batches.label_rows(
        ids, np.random.default_rng(0)))
    torch.testing.assert_close(actions, torch.from_numpy(-data.actions))
    torch.testing.assert_close(obs["instruction_embedding"],
                               text["instruction_embedding"][1 - data.instruction_index])
    # images and states stay the step's own
    torch.testing.assert_close(obs["state"], torch.from_numpy(data.states))


def test_counterfactual_prob_zero_samples_exactly_as_without_them():
    plain = synthetic_demos()
    a, cfg, _ = _batches(plain, 0.0)
    b, _, _ = _batches(_with_counterfactuals(plain), 0.0)
    ids = np.arange(len(plain.states))
    batch_a = batch_sampler(a, ids, cfg)(np.random.default_rng(5))
    batch_b = batch_sampler(b, ids, cfg)(np.random.default_rng(5))
    torch.testing.assert_close(batch_a[1], batch_b[1])
    torch.testing.assert_close(batch_a[0]["image"], batch_b[0]["image"])


def test_half_the_samples_use_their_counterfactual_at_prob_one_half():
    data = _with_counterfactuals(synthetic_demos(episodes=20))
    batches, _, _ = _batches(data, 0.5)
    rows = batches.label_rows(np.arange(len(data.states)), np.random.default_rng(1))
    assert 0.4 < (rows >= len(data.states)).mean() < 0.6


def test_bad_counterfactual_prob_and_missing_labels_are_refused(tmp_path):
    with pytest.raises(ValueError, match="counterfactual_prob"):
        BCConfig(counterfactual_prob=1.5)
    cfg = BCConfig(steps=2, batch_size=4, device="cpu", tensorboard=False, progress=False,
                   counterfactual_prob=0.5,
                   policy=VLAPolicyConfig(**POLICY, text_encoder="hashing"))
    with pytest.raises(ValueError, match="collect --counterfactual"):
        train_bc(synthetic_demos(), tmp_path / "run", cfg, encoder=HashingTextEncoder())


def test_collect_refuses_to_resume_with_counterfactuals_switched(cf_demos, tmp_path):
    with pytest.raises(ValueError, match="counterfactual"):
        collect(CollectConfig(out=str(cf_demos), env="Reach", episodes=4, image_size=16,
                              progress=False))


def test_bc_trains_on_a_counterfactual_dataset(cf_demos, tmp_path):
    data = DemoArrays.from_dataset(VLADataset(cf_demos))
    assert data.has_counterfactuals and len(data.instructions) == 6
    cfg = BCConfig(steps=4, batch_size=8, device="cpu", tensorboard=False, progress=False,
                   counterfactual_prob=0.5, ground_weight=1.0, warmup_steps=1,
                   policy=VLAPolicyConfig(**POLICY, text_encoder="hashing"))
    result = train_bc(data, tmp_path / "run", cfg, encoder=HashingTextEncoder())
    assert result.steps == 4 and np.isfinite(result.train_losses).all()


def test_held_out_stack_scenes_keep_their_base_and_never_crash():
    env = gym.make("vla_sim/Stack-v0", image_size=16, instruction_split="heldout")
    made = 0
    for seed in range(40):
        env.reset(seed=seed)
        task, instance = env.unwrapped.task, env.unwrapped.instance
        cf = task.counterfactual_instance(instance, np.random.default_rng(seed))
        if cf is not None:
            made += 1
            assert cf.roles["destination"] == instance.roles["destination"]
            named = next(o for o in cf.objects if o.name == cf.roles["object"])
            assert allowed_combo(named.color, named.shape, "heldout", target=True)
    env.close()
    assert made > 0  # some held-out scenes have a second held-out cube to name (9 of these 40)


def test_a_counterfactual_chunk_trains_its_first_action_only():
    data = _with_counterfactuals(synthetic_demos())
    cfg = BCConfig(batch_size=16, counterfactual_prob=1.0,
                   policy=VLAPolicyConfig(**POLICY, text_encoder="hashing", action_chunk=3))
    enc = HashingTextEncoder()
    text = {"instruction_embedding": torch.from_numpy(
        enc.features(data.instructions, 8)["instruction_embedding"])}
    batches = _Batches(data, text, cfg.policy, torch.device("cpu"), counterfactual_prob=1.0)
    ids = np.array([0, 1, 2])
    rows = batches.label_rows(ids, np.random.default_rng(0))
    actions, mask = batches.chunk(rows)
    torch.testing.assert_close(actions[:, 0], torch.from_numpy(-data.actions[ids]))
    assert mask[:, 0].all() and not mask[:, 1:].any()
    own_actions, own_mask = batches.chunk(ids)
    assert own_mask.all()


def test_trainers_that_do_not_sample_counterfactuals_refuse_the_setting():
    from vla_sim.agents.training.bc import refuse_counterfactuals

    with pytest.raises(ValueError, match="counterfactual_prob=0"):
        refuse_counterfactuals(BCConfig(counterfactual_prob=0.5), "train multitask")
    refuse_counterfactuals(BCConfig(), "train multitask")


def test_dagger_with_counterfactuals_on_plain_demos_is_refused_before_the_run(tmp_path):
    plain = tmp_path / "plain"
    collect(CollectConfig(out=str(plain), env="Reach", episodes=1, image_size=16, progress=False))
    with pytest.raises(ValueError, match="collect --counterfactual"):
        train_dagger(plain, tmp_path / "run", tiny(**{"bc.counterfactual_prob": 0.5}))
    assert not (tmp_path / "run").exists()


def test_only_empty_handed_steps_train_on_their_counterfactual():
    data = _with_counterfactuals(synthetic_demos())
    hold = GOAL_STATE_LAYOUT["holding"]
    env = np.zeros((len(data.actions), hold.stop), np.float32)
    env[::3, hold] = 1.0  # the instructed object held
    cf_env = np.zeros_like(env)
    cf_env[1::3, hold] = 1.0  # the counterfactual's object held
    data = dataclasses.replace(data, env_states=env, counterfactual_env_states=cf_env)
    batches, _, _ = _batches(data, 1.0)
    rows = batches.label_rows(np.arange(len(data.actions)), np.random.default_rng(0))
    uses_cf = rows >= len(data.actions)
    np.testing.assert_array_equal(uses_cf, np.arange(len(data.actions)) % 3 == 2)
