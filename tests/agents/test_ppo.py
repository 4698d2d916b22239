"""PPO warm start: before any update the SB3 policy acts exactly like the BC policy; a tiny run
writes a checkpoint that load_policy reloads."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import vla_sim  # noqa: F401
from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, load_policy, save_policy
from vla_sim.agents.training.ppo import PPOConfig, build_ppo, train_ppo
from vla_sim.agents.training.rl_common import make_training_env
from vla_sim.language.encoder import get_text_encoder

TINY = dict(image_size=32, channels=[8, 16], image_features=32, attn_dim=16, attn_heads=2,
            lang_features=16, state_hidden=16, trunk_hidden=[32], num_queries=2)


def tiny_bc_checkpoint(path):
    """A randomly initialised policy with non-trivial action head and normalisation stats."""
    torch.manual_seed(0)
    policy = VLAPolicy(VLAPolicyConfig(**TINY))
    with torch.no_grad():
        policy.action_head.mean.weight.normal_(0.0, 0.3)
        policy.action_head.mean.bias.normal_(0.0, 0.1)
    policy.set_normalization(np.zeros(22), np.full(22, 0.5), [0.1, -0.1, 0.0, 0.2],
                             [0.5, 0.5, 0.4, 0.9])
    return save_policy(policy, path)


@pytest.fixture(scope="module")
def bc_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return tiny_bc_checkpoint(tmp_path_factory.mktemp("bc") / "bc")


def _cfg(**kw):
    base = dict(env_id="vla_sim/Reach-v0", randomization="low", reward="dense",
                text_encoder="hashing", n_steps=32, batch_size=16, n_epochs=1, total_env_steps=64,
                eval_episodes=1, progress=False, max_episode_steps=12, value_warmup_rollouts=1)
    base.update(kw)
    return PPOConfig(**base)


def test_warm_started_ppo_acts_exactly_like_bc(bc_dir):
    model = build_ppo(_cfg(), bc_dir, env=None)
    bc = load_policy(bc_dir)
    bc.text_encoder = get_text_encoder("hashing")
    wrapped = make_training_env("vla_sim/Reach-v0", TINY, reward="sparse", text_encoder="hashing")
    raw = gym.make("vla_sim/Reach-v0", image_size=32)
    for seed in range(3):
        obs, _ = wrapped.reset(seed=seed)
        raw_obs, _ = raw.reset(seed=seed)
        ppo_action, _ = model.predict(obs, deterministic=True)
        # Same tensors in (SB3 hands the network contiguous CHW images): bit-identical.
        tensors, _ = model.policy.obs_to_tensor(obs)
        with torch.no_grad():
            sb3_mean = model.policy.get_distribution(tensors).mode()
            batch, _ = bc.prepare_obs(obs)
            batch["image"] = batch["image"].permute(0, 3, 1, 2).contiguous().float() / 255.0
            bc_mean = bc.distribution(batch).mode()
        assert torch.equal(sb3_mean, bc_mean)
        assert np.array_equal(ppo_action, np.clip(bc_mean[0].numpy(), -1, 1))
        # BC's own act() on the raw env obs (HWC layout: float rounding only).
        np.testing.assert_allclose(ppo_action, bc.act(raw_obs), atol=1e-5)
        assert np.abs(ppo_action).max() > 1e-3  # not trivially zero
    # The exploration noise is the configured log-std, in env units via the BC action stats.
    head = model.policy.vla.action_head
    torch.testing.assert_close(head.log_std, torch.full((4,), -1.25))
    model.get_env().close()
    wrapped.close()
    raw.close()


def test_ppo_short_run_writes_loadable_checkpoint(bc_dir, tmp_path):
    result = train_ppo(_cfg(), tmp_path / "run", init=bc_dir)
    assert result.steps == 64
    for name in ("best", "last"):
        policy = load_policy(tmp_path / "run" / name)
        policy.text_encoder = get_text_encoder("hashing")
        env = gym.make("vla_sim/Reach-v0", image_size=32)
        obs, _ = env.reset(seed=0)
        action = policy.act(obs)
        assert action.shape == (4,) and np.all(np.abs(action) <= 1)
        env.close()
    # One value warm-up rollout, then one PPO update: the actor moved, the BC stats did not.
    bc, last = load_policy(bc_dir), load_policy(tmp_path / "run" / "last")
    assert not torch.equal(bc.action_head.mean.weight, last.action_head.mean.weight)
    assert torch.equal(bc.action_head.action_std, last.action_head.action_std)
    assert (tmp_path / "run" / "tb").is_dir()


def test_value_warmup_leaves_the_actor_alone(bc_dir, tmp_path):
    cfg = _cfg(total_env_steps=32, value_warmup_rollouts=5)
    train_ppo(cfg, tmp_path / "run", init=bc_dir)
    bc, last = load_policy(bc_dir), load_policy(tmp_path / "run" / "last")
    for key, value in bc.state_dict().items():
        if key.startswith("value_head") or key == "action_head.log_std":
            continue
        assert torch.equal(value, last.state_dict()[key]), key
    from vla_sim.agents.training.rl_common import load_warm_start

    fresh = load_warm_start(bc_dir, seed=cfg.seed, value_hidden=cfg.value_hidden)
    assert last.config.value_hidden == cfg.value_hidden > 0  # the MLP critic replaced BC's
    assert any(not torch.equal(a, b) for a, b in
               zip(fresh.value_head.parameters(), last.value_head.parameters()))


def test_critic_learns_at_its_own_rate_and_keeps_it_through_the_schedule(bc_dir):
    from vla_sim.agents.training.ppo import build_ppo

    cfg = _cfg(lr=2e-5, value_lr=4e-4)
    model = build_ppo(cfg, bc_dir)
    groups = model.policy.optimizer.param_groups
    critic = {id(p) for p in model.policy.vla.value_head.parameters()}
    assert {id(p) for p in groups[1]["params"]} == critic
    assert not critic & {id(p) for p in groups[0]["params"]}
    model._current_progress_remaining = 1.0
    model._setup_learn(total_timesteps=1)
    model._update_learning_rate(model.policy.optimizer)
    assert [g["lr"] for g in groups] == pytest.approx([2e-5, 4e-4])
    model.get_env().close()


def test_log_std_learns_at_its_own_rate_when_given_one(bc_dir):
    from vla_sim.agents.training.ppo import build_ppo

    model = build_ppo(_cfg(lr=2e-5, value_lr=4e-4, log_std_lr=1e-2), bc_dir)
    groups = model.policy.optimizer.param_groups
    log_std = model.policy.vla.action_head.log_std
    assert [id(p) for p in groups[2]["params"]] == [id(log_std)]
    assert not any(id(log_std) == id(p) for g in groups[:2] for p in g["params"])
    model._current_progress_remaining = 1.0
    model._setup_learn(total_timesteps=1)
    model._update_learning_rate(model.policy.optimizer)
    assert [g["lr"] for g in groups] == pytest.approx([2e-5, 4e-4, 1e-2])
    model.get_env().close()
    default = build_ppo(_cfg(), bc_dir)  # without it: two groups, log_std with the actor
    assert len(default.policy.optimizer.param_groups) == 2
    default.get_env().close()


def test_mean_anchor_pulls_the_mean_to_bc_and_leaves_the_std_free():
    from vla_sim.agents.training.rl_common import anchor_to_bc

    bc = torch.distributions.Normal(torch.zeros(3, 4), torch.full((3, 4), 0.2))
    mu = torch.full((3, 4), 0.1, requires_grad=True)
    log_std = torch.full((3, 4), math.log(0.5), requires_grad=True)
    pi = torch.distributions.Normal(mu, log_std.exp())
    full, mean_only = anchor_to_bc(pi, bc, "kl"), anchor_to_bc(pi, bc, "mean")
    assert mean_only.item() == pytest.approx(4 * 0.5 * (0.1 / 0.2) ** 2)
    assert full.item() > mean_only.item()  # the std term: 0.5 is not BC's 0.2
    (std_grad,) = torch.autograd.grad(mean_only, log_std, retain_graph=True, allow_unused=True)
    assert std_grad is None or torch.count_nonzero(std_grad) == 0
    (full_grad,) = torch.autograd.grad(full, log_std)
    assert torch.all(full_grad > 0)  # the full KL pushes the std down toward BC's
    (mu_grad,) = torch.autograd.grad(mean_only, mu)
    assert torch.all(mu_grad > 0)
    with pytest.raises(ValueError, match="bc_anchor"):
        anchor_to_bc(pi, bc, "both")


def test_ppo_with_the_mean_anchor_trains_its_std(bc_dir, tmp_path):
    cfg = _cfg(bc_anchor="mean", log_std_lr=1e-2, value_warmup_rollouts=0)
    model = build_ppo(cfg, bc_dir)
    assert model.bc_anchor == "mean"  # what _kl_to_bc hands anchor_to_bc
    model.get_env().close()
    result = train_ppo(cfg, tmp_path / "run", init=bc_dir)
    end = load_policy(tmp_path / "run" / "last").action_head.log_std.detach()
    start = torch.full_like(end, cfg.init_log_std)  # where PPO sets it before the first update
    assert result.steps >= 64 and not torch.allclose(start, end, atol=1e-3)


class _Interrupt(Exception):
    pass


def test_interrupted_ppo_run_resumes_from_its_last_checkpoint(bc_dir, tmp_path, monkeypatch):
    from vla_sim.agents.training import ppo as ppo_mod
    from vla_sim.agents.training.common import load_trainer_state

    original = ppo_mod._CheckpointCallback.save

    def save_then_crash(self):
        original(self)
        if self.model.num_timesteps == 32:
            raise _Interrupt  # killed right after the first checkpoint
    monkeypatch.setattr(ppo_mod._CheckpointCallback, "save", save_then_crash)
    cfg = _cfg(checkpoint_every_env_steps=32)
    with pytest.raises(_Interrupt):
        train_ppo(cfg, tmp_path / "run", init=bc_dir)
    state_dir = tmp_path / "run" / "checkpoints" / "last_state"
    saved = load_trainer_state(state_dir)
    assert saved["num_timesteps"] == 32 and saved["rollouts_trained"] == 1
    assert not (tmp_path / "run" / "last").exists()
    with pytest.raises(ValueError, match="already holds a run"):
        train_ppo(cfg, tmp_path / "run", init=bc_dir)
    with pytest.raises(ValueError, match="lr"):
        train_ppo(_cfg(checkpoint_every_env_steps=32, lr=1e-3), tmp_path / "run", init=bc_dir, resume=True)
    monkeypatch.setattr(ppo_mod._CheckpointCallback, "save", original)
    result = train_ppo(cfg, tmp_path / "run", init=bc_dir, resume=True)
    assert result.steps == 64
    final = load_trainer_state(state_dir)
    # One more rollout, trained once: the value warm-up (1 rollout) was not repeated.
    assert final["num_timesteps"] == 64 and final["rollouts_trained"] == 2
    assert final["eval_history"][0] == saved["eval_history"][0]  # the warm start's evaluation
    assert load_policy(tmp_path / "run" / "last") is not None


def test_ppo_resume_without_a_previous_run_is_an_error(bc_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no previous PPO run"):
        train_ppo(_cfg(), tmp_path / "nothing", init=bc_dir, resume=True)


def test_training_env_normalizes_rewards_only(bc_dir):
    from stable_baselines3.common.vec_env import VecNormalize

    from vla_sim.agents.training.ppo import make_vec_env

    policy = load_policy(bc_dir)
    vec = make_vec_env(_cfg(), policy.config)
    try:
        assert isinstance(vec, VecNormalize) and vec.norm_reward and not vec.norm_obs
    finally:
        vec.close()
    plain = make_vec_env(_cfg(normalize_reward=False), policy.config)
    assert not isinstance(plain, VecNormalize)
    plain.close()


def test_wall_clock_budget_stops_training_and_still_writes_an_evaluable_checkpoint(bc_dir, tmp_path):
    result = train_ppo(_cfg(total_env_steps=640, max_minutes=1e-6), tmp_path / "run", init=bc_dir)
    assert 0 < result.steps < 640
    assert load_policy(tmp_path / "run" / "last").config.value_hidden == 256


def test_ppo_freeze_vision_keeps_camera_encoders_at_bc_weights(bc_dir, tmp_path):
    train_ppo(_cfg(freeze_vision=True, lr=1e-3, value_warmup_rollouts=0), tmp_path / "run",
              init=bc_dir)
    bc, last = load_policy(bc_dir).state_dict(), load_policy(tmp_path / "run" / "last").state_dict()
    vision = [k for k in bc if k.startswith("extractor.vision.")]
    assert vision and all(torch.equal(bc[k], last[k]) for k in vision)
    assert not torch.equal(bc["extractor.trunk.0.weight"], last["extractor.trunk.0.weight"])


def _episode(n, value):
    return {"x": np.full((n, 2), value, np.float32)}, np.full((n, 4), value, np.float32)


def test_success_buffer_drops_oldest_episodes_and_samples_only_stored_steps():
    from vla_sim.agents.training.ppo import SuccessBuffer

    buffer = SuccessBuffer(max_steps=10)
    for value, n in ((1.0, 6), (2.0, 5), (3.0, 4)):
        buffer.add_episode(*_episode(n, value))
    assert len(buffer) == 9 and [a[0, 0] for _, a in buffer.episodes] == [2.0, 3.0]
    obs, actions = buffer.sample(200, "cpu")
    assert set(actions[:, 0].tolist()) == {2.0, 3.0}
    assert torch.equal(obs["x"][:, 0], actions[:, 0])  # observation and action stay paired


def test_success_collector_keeps_successful_episodes_only():
    from vla_sim.agents.training.ppo import SuccessBuffer, _SuccessCollector

    buffer = SuccessBuffer(max_steps=100)
    collector = _SuccessCollector(buffer)
    for t, (dones, successes) in enumerate([([0, 0], [0, 0]), ([1, 0], [1, 0]),
                                            ([0, 1], [0, 0]), ([1, 0], [0, 0])]):
        collector.locals = {"obs_tensor": {"x": torch.full((2, 1), float(t))},
                            "clipped_actions": np.full((2, 4), t, np.float32),
                            "dones": np.array(dones, bool),
                            "infos": [{"is_success": bool(s)} for s in successes]}
        collector._on_step()
    assert len(buffer.episodes) == 1  # env 0's first episode (steps 0, 1); the others failed
    obs, actions = buffer.episodes[0]
    assert obs["x"][:, 0].tolist() == [0.0, 1.0] and actions[:, 0].tolist() == [0.0, 1.0]


def test_self_imitation_raises_the_likelihood_of_successful_actions(bc_dir):
    from vla_sim.agents.training.ppo import SuccessBuffer

    model = build_ppo(_cfg(sil_coef=1.0, sil_batches=20, batch_size=8, lr=1e-3), bc_dir)
    env = model.get_env()
    obs = env.reset()
    steps = {k: np.repeat(v, 8, axis=0) for k, v in obs.items()}
    actions = np.tile(np.array([[0.5, -0.5, 0.3, 1.0]], np.float32), (8, 1))
    model.sil_buffer = SuccessBuffer(100)
    model.sil_buffer.add_episode(steps, actions)

    def nll():
        with torch.no_grad():
            o, a = model.sil_buffer.sample(8, "cpu")
            dist = model.policy._get_action_dist_from_latent(model.policy.extract_features(o))
            return -dist.log_prob(a).mean().item()
    before = nll()
    model._self_imitate()
    assert nll() < before - 0.1
    env.close()


def test_ppo_with_self_imitation_runs_end_to_end(bc_dir, tmp_path):
    result = train_ppo(_cfg(sil_coef=0.5, sil_batches=2), tmp_path / "run", init=bc_dir)
    assert result.steps >= 64 and (tmp_path / "run" / "last" / "model.safetensors").is_file()


@pytest.mark.parametrize("field,value", [("value_hidden", -1), ("value_lr", 0.0), ("lr", -1e-4),
                                         ("sil_coef", -0.5), ("sil_batches", 0),
                                         ("max_minutes", -1.0), ("log_std_lr", 0.0),
                                         ("bc_anchor", "std")])
def test_bad_rl_config_values_are_refused_by_name(field, value):
    from vla_sim.agents.training.reinforce import ReinforceConfig

    with pytest.raises(ValueError, match=field):
        PPOConfig(**{field: value})
    if field in ("value_hidden", "value_lr", "lr", "log_std_lr", "bc_anchor"):
        with pytest.raises(ValueError, match=field):
            ReinforceConfig(**{field: value})
    if field == "value_hidden":
        with pytest.raises(ValueError, match=field):
            VLAPolicyConfig(value_hidden=value)


def test_kl_anchor_stays_constant_unless_a_decay_horizon_is_given():
    from vla_sim.agents.training.rl_common import bc_schedule

    assert bc_schedule(0.7, 0, 10**9) == 0.7
    assert bc_schedule(1.0, 100, 25) == pytest.approx(0.75)
    assert bc_schedule(1.0, 100, 500) == 0.0


def test_ppo_without_tensorboard_leaves_no_folder_in_the_temp_dir(bc_dir, tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "system_tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    train_ppo(_cfg(tensorboard=False, total_env_steps=32, value_warmup_rollouts=0),
              tmp_path / "run", init=bc_dir)
    assert list(scratch.iterdir()) == []
