"""RLPD: the TD target takes the min over a random pair of target critics, every batch is half
demonstrations (replayed in the training env with its rewards and privileged state), and a
short Reach run from a BC checkpoint fits its critics, writes a checkpoint that evaluates, and
resumes with its buffers."""

import importlib.util
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from tiny_policy import SMALL

import vla_sim  # noqa: F401
from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, load_policy, save_policy
from vla_sim.agents.training import rlpd
from vla_sim.agents.training.configs import RLPDConfig
from vla_sim.agents.training.rl_common import make_training_env
from vla_sim.agents.training.rlpd import (
    RLPDLearner,
    TransitionBuffer,
    buffer_dims,
    replay_demonstrations,
    sample_batch,
    split_policy,
    train_rlpd,
)
from vla_sim.envs.wrappers.privileged_state import PRIVILEGED_DIM
from vla_sim.language.encoder import get_text_encoder

POLICY = dict(SMALL, num_queries=2, critic_privileged_dim=PRIVILEGED_DIM)


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    from vla_sim.data.collect import CollectConfig, collect

    root = tmp_path_factory.mktemp("demos") / "reach"
    collect(CollectConfig(out=str(root), env="Reach", episodes=3, image_size=16, noise=0.1,
                          progress=False))
    return root


@pytest.fixture(scope="module")
def bc_dir(tmp_path_factory):
    """A randomly initialised policy with a non-trivial action head and normalisation."""
    torch.manual_seed(0)
    policy = VLAPolicy(VLAPolicyConfig(**SMALL, num_queries=2))
    with torch.no_grad():
        policy.action_head.mean.weight.normal_(0.0, 0.3)
    policy.set_normalization(np.zeros(22), np.full(22, 0.5), [0.1, -0.1, 0.0, 0.2],
                             [0.5, 0.5, 0.4, 0.9])
    return save_policy(policy, tmp_path_factory.mktemp("bc") / "bc")


def _cfg(demos, **kw) -> RLPDConfig:
    """A Reach run with a tiny critic: updates from env step 16, the actor's from 32."""
    base = {"env_id": "vla_sim/Reach-v0", "randomization": "low", "reward": "dense",
            "text_encoder": "hashing", "total_env_steps": 96, "max_episode_steps": 12,
            "eval_episodes": 1, "progress": False, "tensorboard": False, "batch_size": 16,
            "value_hidden": 32, "ensemble_size": 4, "utd_ratio": 2, "learning_starts": 16,
            "critic_warmup_env_steps": 32, "value_lr": 1e-3, "demos": str(demos),
            "checkpoint_every_env_steps": 10_000}
    return RLPDConfig(**{**base, **kw})


def _learner(**kw) -> tuple[RLPDLearner, int]:
    torch.manual_seed(0)
    policy = VLAPolicy(VLAPolicyConfig(**SMALL))
    _, actor, dim = split_policy(policy, 1)
    cfg = RLPDConfig(**{"value_hidden": 8, **kw})
    return RLPDLearner(cfg, actor, dim, 4, torch.device("cpu")), dim


def _constant_targets(learner: RLPDLearner, values: list[float]) -> None:
    """Target member i outputs ``values[i]`` whatever its input."""
    last = learner.target.linears[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(values).view(-1, 1, 1))


def test_td_target_takes_the_min_over_a_random_pair_of_target_critics():
    learner, dim = _learner(ensemble_size=4, critic_subset=2, gamma=0.5, backup_entropy=False)
    _constant_targets(learner, [1.0, 2.0, 3.0, 4.0])
    batch = {"next_features": torch.randn(5, dim), "reward": torch.full((5, 1), 0.25),
             "terminated": torch.tensor([[0.0], [0.0], [0.0], [0.0], [1.0]])}
    # Evaluating only the drawn members gives those members' values.
    x, a = torch.randn(5, dim), torch.rand(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(learner.critic(x, a, torch.tensor([2, 0])),
                                   learner.critic(x, a)[[2, 0]])
    learner.draw_subset = lambda: torch.tensor([3, 1])  # members 4.0 and 2.0
    target = learner.td_target(batch)
    torch.testing.assert_close(target, torch.tensor([1.25, 1.25, 1.25, 1.25, 0.25]))
    del learner.draw_subset
    subsets = [learner.draw_subset() for _ in range(300)]
    assert all(len(s) == 2 and len(set(s.tolist())) == 2 for s in subsets)
    mins = {float(learner.td_target(batch)[0]) for _ in range(300)}
    # min over pairs of {1,2,3,4} is 1, 2 or 3: never the min over all four every time, never 4
    assert mins == {0.75, 1.25, 1.75}
    # The soft backup subtracts alpha * log pi(a'|s') of the sampled next action.
    learner.cfg.backup_entropy = True
    learner.draw_subset = lambda: torch.tensor([0, 1])
    torch.manual_seed(1)
    soft = learner.td_target(batch)
    torch.manual_seed(1)
    dist = learner.actor.distribution(batch["next_features"])
    log_prob = dist.log_prob(dist.sample()).detach()
    expected = 0.25 + 0.5 * torch.tensor([1, 1, 1, 1, 0.0]) * (1.0 - learner.alpha * log_prob)
    torch.testing.assert_close(soft, expected)


def test_every_batch_is_half_demonstrations():
    dims = buffer_dims(3, 0, 4)
    demo, online = TransitionBuffer(50, dims), TransitionBuffer(200, dims)
    demo.add({k: np.ones((50, d), np.float32) for k, d in dims.items()})
    online.add({k: np.zeros((200, d), np.float32) for k, d in dims.items()})
    g = torch.Generator().manual_seed(0)
    for size, fraction, n_demo in ((32, 0.5, 16), (31, 0.5, 16), (40, 0.25, 10)):
        batch = sample_batch(demo, online, size, fraction, g, torch.device("cpu"))
        assert len(batch["demo"]) == size and int(batch["demo"].sum()) == n_demo
        assert bool((batch["features"][batch["demo"]] == 1).all())
        assert bool((batch["features"][~batch["demo"]] == 0).all())
    batch = sample_batch(None, online, 32, 0.5, g, torch.device("cpu"))  # no demonstrations
    assert not bool(batch["demo"].any()) and len(batch["reward"]) == 32


def test_online_buffer_overwrites_its_oldest_transitions():
    dims = buffer_dims(2, 0, 4)
    buffer = TransitionBuffer(5, dims)
    for start in (0, 3, 6):
        buffer.add({k: np.full((3, d), 0.0, np.float32) + np.arange(start, start + 3)[:, None]
                    for k, d in dims.items()})
    assert len(buffer) == 5 and sorted(buffer.data["reward"][:, 0]) == [4, 5, 6, 7, 8]


def test_demonstrations_replay_with_this_runs_rewards_and_privileged_state(demos, monkeypatch):
    from vla_sim.data import open_dataset

    policy = VLAPolicy(VLAPolicyConfig(**POLICY))
    encoder, _, dim = split_policy(policy, 1)
    env = make_training_env("vla_sim/Reach-v0", POLICY, reward="dense", text_encoder="hashing")
    buffer, info = replay_demonstrations(demos, env, encoder, torch.device("cpu"))
    reader = open_dataset(demos)
    recorded = reader.low_dim_arrays()
    assert info["episodes"] == 3 and info["dropped"] == 0 and len(buffer) == reader.num_frames
    # Dense mode: the replayed rewards are the ones recorded (the dataset's env was dense).
    np.testing.assert_allclose(buffer.data["reward"][:, 0], recorded["next.reward"], atol=1e-5)
    # Labels are the recorded (clean) expert actions; executed ones carry the DART noise.
    np.testing.assert_allclose(buffer.data["label"], recorded["action"])
    assert not np.allclose(buffer.data["action"], recorded["action"])
    ends = np.cumsum([e["length"] for e in reader.episodes]) - 1
    assert buffer.data["terminated"][ends, 0].tolist() == [1.0] * 3  # successes end episodes
    assert buffer.data["terminated"][:, 0].sum() == 3
    assert buffer.data["privileged"].shape == (len(buffer), PRIVILEGED_DIM)
    assert buffer.data["features"].shape == (len(buffer), dim)
    # The next features of step t are the features of step t + 1 within an episode.
    np.testing.assert_allclose(buffer.data["next_features"][0], buffer.data["features"][1],
                               atol=1e-6)
    # Replaying the wrong actions leaves the recorded states: every episode is refused.
    monkeypatch.setattr("vla_sim.data.collect.executed_actions",
                        lambda actions, seed, noise: np.zeros_like(actions))
    with pytest.raises(ValueError, match="demos"):
        replay_demonstrations(demos, env, encoder, torch.device("cpu"))
    env.close()


def test_short_run_fits_its_critics_and_writes_an_evaluable_checkpoint(demos, bc_dir, tmp_path,
                                                                       monkeypatch):
    torch.set_num_threads(1)
    logged: list[dict[str, float]] = []
    original = rlpd.ScalarLogger.scalars

    def record(self, values, step):
        logged.append(dict(values))
        original(self, values, step)
    monkeypatch.setattr(rlpd.ScalarLogger, "scalars", record)
    monkeypatch.setattr(rlpd, "LOG_EVERY_ENV_STEPS", 16)
    cfg = _cfg(demos, total_env_steps=240, eval_every_env_steps=120)
    result = train_rlpd(cfg, tmp_path / "run", init=bc_dir)
    run = tmp_path / "run"
    assert result.steps == 240 and [s for s, _ in result.eval_history] == [0, 120, 240]
    q_losses = [v["train/q_loss"] for v in logged if "train/q_loss" in v]
    assert len(q_losses) >= 10
    assert np.mean(q_losses[-3:]) < 0.5 * np.mean(q_losses[:3])
    assert any("train/actor_loss" in v for v in logged)  # the actor trained after its warm-up
    summary = json.loads((run / "summary.json").read_text())
    assert summary["trainer"] == "rlpd" and summary["updates"] == (240 - 16 + 1) * 2
    assert summary["demos"]["episodes"] == 3
    assert (run / "curve.csv").is_file() and (run / "curves.png").is_file()
    # The actor (SMALL's one trunk layer and the head) moved; the frozen encoder did not.
    bc, last = load_policy(bc_dir).state_dict(), load_policy(run / "last").state_dict()
    assert not torch.equal(bc["action_head.mean.weight"], last["action_head.mean.weight"])
    assert not torch.equal(bc["extractor.trunk.0.weight"], last["extractor.trunk.0.weight"])
    frozen = [k for k in bc if k.startswith(("extractor.vision", "extractor.language",
                                             "extractor.state_mlp"))]
    assert frozen and all(torch.equal(bc[k], last[k]) for k in frozen)
    # The checkpoint is a VLAPolicy that acts in a plain env (no privileged key).
    for name in ("best", "last"):
        policy = load_policy(run / name)
        policy.text_encoder = get_text_encoder("hashing")
        env = gym.make("vla_sim/Reach-v0", image_size=16)
        obs, _ = env.reset(seed=0)
        action = policy.act(obs)
        assert action.shape == (4,) and np.all(np.abs(action) <= 1)
        env.close()


def test_wall_clock_budget_stops_training_and_still_writes_an_evaluable_checkpoint(
        demos, bc_dir, tmp_path):
    result = train_rlpd(_cfg(demos, total_env_steps=640, max_minutes=1e-6), tmp_path / "run",
                        init=bc_dir)
    assert result.steps < 640 and load_policy(tmp_path / "run" / "last") is not None


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_with_its_buffers_and_critics(demos, bc_dir, tmp_path,
                                                              monkeypatch):
    from safetensors.torch import load_file

    from vla_sim.agents.training.common import load_trainer_state

    torch.set_num_threads(1)
    original = rlpd._save_state

    def save_then_crash(state_dir, policy, learner, buffers, state, meta):
        original(state_dir, policy, learner, buffers, state, meta)
        raise _Interrupt  # killed right after the first checkpoint
    monkeypatch.setattr(rlpd, "_save_state", save_then_crash)
    cfg = _cfg(demos, total_env_steps=96, checkpoint_every_env_steps=48)
    with pytest.raises(_Interrupt):
        train_rlpd(cfg, tmp_path / "run", init=bc_dir)
    state_dir = tmp_path / "run" / "checkpoints" / "last_state"
    saved = load_trainer_state(state_dir)
    saved_critics = load_file(str(state_dir / rlpd.CRITICS_FILE))
    with np.load(state_dir / rlpd.REPLAY_FILE) as arrays:
        saved_online = arrays["online__features"].copy()
        assert arrays["demo__pos"][1] > 0  # the demonstrations are kept, not replayed again
    assert saved["step"] == 48 and len(saved_online) == 48
    with pytest.raises(ValueError, match="already holds a run"):
        train_rlpd(cfg, tmp_path / "run", init=bc_dir)
    with pytest.raises(ValueError, match="utd_ratio"):
        train_rlpd(_cfg(demos, total_env_steps=96, checkpoint_every_env_steps=48, utd_ratio=3),
                   tmp_path / "run", init=bc_dir, resume=True)
    monkeypatch.setattr(rlpd, "_save_state", original)
    resumed = {}
    monkeypatch.setattr(rlpd, "replay_demonstrations",
                        lambda *a, **k: pytest.fail("resume replayed the demonstrations"))
    original_load = RLPDLearner.load_tensors

    def spy(self, tensors):
        original_load(self, tensors)
        resumed["critic"] = {k: v.clone() for k, v in self.tensors().items()}
    monkeypatch.setattr(RLPDLearner, "load_tensors", spy)
    result = train_rlpd(cfg, tmp_path / "run", init=bc_dir, resume=True)
    assert result.steps == 96
    assert all(torch.equal(saved_critics[k], resumed["critic"][k]) for k in saved_critics)
    final = load_trainer_state(state_dir)
    assert final["step"] == 96 and final["history"][0] == saved["history"][0]
    with np.load(state_dir / rlpd.REPLAY_FILE) as arrays:
        online = arrays["online__features"]
        assert len(online) == 96 and np.array_equal(online[:48], saved_online)
    assert load_policy(tmp_path / "run" / "last") is not None


def test_resume_without_a_previous_run_is_an_error(demos, bc_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no previous RLPD run"):
        train_rlpd(_cfg(demos), tmp_path / "nothing", init=bc_dir, resume=True)


def test_a_run_with_demonstrations_needs_a_dataset(bc_dir, tmp_path):
    with pytest.raises(ValueError, match="demos"):
        train_rlpd(_cfg(""), tmp_path / "run", init=bc_dir)


@pytest.mark.parametrize("field,value", [
    ("ensemble_size", 0), ("critic_subset", 5), ("critic_subset", 0), ("utd_ratio", 0),
    ("batch_size", 0), ("buffer_size", 0), ("demo_fraction", 1.0), ("demo_fraction", -0.1),
    ("demo_fraction", float("nan")), ("tau", 0.0), ("tau", 1.5), ("init_temperature", 0.0),
    ("temperature_lr", float("inf")), ("target_entropy", float("nan")), ("value_hidden", 0),
    ("actor_layers", -1), ("learning_starts", -1), ("critic_warmup_env_steps", -1),
    ("max_minutes", -1.0), ("demo_episodes", -2), ("backend", "ray"), ("bc_coef", -1.0),
    ("lr", 0.0), ("bc_anchor", "mean")])
def test_bad_rlpd_config_values_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        RLPDConfig(**{field: value})


def test_actor_layers_beyond_the_trunk_are_refused():
    with pytest.raises(ValueError, match="actor_layers"):
        split_policy(VLAPolicy(VLAPolicyConfig(**SMALL)), 2)


def test_cli_builds_the_rlpd_config_from_flags(tmp_path):
    import argparse

    from vla_sim.cli import train_rl
    from vla_sim.config import config_from_args

    parser = argparse.ArgumentParser()
    train_rl.add_rlpd_parser(parser.add_subparsers(dest="trainer"))
    args = parser.parse_args(["rlpd", "--init", "BC", "--out", str(tmp_path), "--demos", "DATA",
                              "--utd-ratio", "3", "--env", "vla_sim/Reach-v0", "tau=0.01"])
    cfg = config_from_args(RLPDConfig, args)
    assert args.func is train_rl.run_rlpd and args.init == "BC"
    assert (cfg.demos, cfg.utd_ratio, cfg.env_id, cfg.tau) == ("DATA", 3, "vla_sim/Reach-v0",
                                                               0.01)


def test_rl_benchmark_takes_rlpd_overrides():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "rl_benchmark.py"
    spec = importlib.util.spec_from_file_location("rl_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.parse_overrides(["utd_ratio=3", "lr=5e-5"]) == {"utd_ratio": 3, "lr": 5e-5}
    assert module._fields(RLPDConfig, {"utd_ratio": 3, "sil_coef": 1.0}) == {"utd_ratio": 3}
