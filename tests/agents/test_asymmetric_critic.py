"""The asymmetric critic: it reads the env's privileged state, the actor never does; PPO and
REINFORCE train it; checkpoints with it reload and act in plain (unwrapped) envs. Plus frozen
vision (no autograd through the convs) and the cached BC anchor."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_ppo import TINY, _cfg, tiny_bc_checkpoint

import vla_sim  # noqa: F401
from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, load_policy
from vla_sim.agents.policies.vla import PrivilegedCritic
from vla_sim.agents.training.ppo import BC_MEAN_KEY, build_ppo, train_ppo
from vla_sim.agents.training.rl_common import freeze_vision, load_warm_start
from vla_sim.envs.wrappers.privileged_state import PRIVILEGED_DIM
from vla_sim.language.encoder import get_text_encoder


@pytest.fixture(scope="module")
def bc_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return tiny_bc_checkpoint(tmp_path_factory.mktemp("bc") / "bc")


def _batch(config: VLAPolicyConfig, n: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s, d, t = config.image_size, config.text_dim, config.max_tokens
    return {"image": torch.randint(0, 256, (n, s, s, 3), generator=g, dtype=torch.uint8),
            "state": torch.randn(n, config.state_dim, generator=g),
            "instruction_embedding": torch.randn(n, d, generator=g),
            "instruction_tokens": torch.randn(n, t, d, generator=g),
            "instruction_mask": torch.ones(n, t),
            "privileged": torch.randn(n, PRIVILEGED_DIM, generator=g)}


def test_actor_ignores_the_privileged_input_and_the_critic_reads_it():
    torch.manual_seed(0)
    policy = VLAPolicy(VLAPolicyConfig(**TINY, critic_privileged_dim=PRIVILEGED_DIM,
                                       value_hidden=32))
    assert isinstance(policy.value_head, PrivilegedCritic) and policy.asymmetric_critic
    assert "privileged" not in policy.observation_space.spaces  # what the evaluator checks
    obs = _batch(policy.config)
    other = {**obs, "privileged": obs["privileged"] * 5 + 3}
    with torch.no_grad():
        d1, d2 = policy.distribution(obs), policy.distribution(other)
        v1 = policy.value(obs, policy.extractor(obs))
        v2 = policy.value(other, policy.extractor(other))
    assert torch.equal(d1.dist.mean, d2.dist.mean) and torch.equal(d1.dist.stddev,
                                                                   d2.dist.stddev)
    assert not torch.allclose(v1, v2)
    # without the key (an evaluation env): actions as before, no value, no error
    plain = {k: v for k, v in obs.items() if k != "privileged"}
    with torch.no_grad():
        mean, value = policy(plain)
    assert value is None and torch.equal(mean, d1.dist.mean)
    with pytest.raises(KeyError, match="PrivilegedObservation"):
        policy.value(plain, policy.extractor(plain))


def test_critic_loss_never_reaches_the_actor():
    torch.manual_seed(0)
    policy = VLAPolicy(VLAPolicyConfig(**TINY, critic_privileged_dim=PRIVILEGED_DIM,
                                       critic_features=True))
    obs = _batch(policy.config)
    policy.value(obs, policy.extractor(obs)).pow(2).sum().backward()
    actor = [p for n, p in policy.named_parameters() if not n.startswith("value_head.")]
    assert all(p.grad is None for p in actor)
    assert all(p.grad is not None for p in policy.value_head.parameters())


def test_sb3_policy_actions_are_unchanged_by_the_privileged_input(bc_dir):
    model = build_ppo(_cfg(), bc_dir)
    env = model.get_env()
    try:
        assert "privileged" in env.observation_space.spaces
        obs = env.reset()
        tensors, _ = model.policy.obs_to_tensor(obs)
        other = {**tensors, "privileged": tensors["privileged"] + 10.0}
        with torch.no_grad():
            a1 = model.policy.get_distribution(tensors).mode()
            a2 = model.policy.get_distribution(other).mode()
            v1, v2 = model.policy.predict_values(tensors), model.policy.predict_values(other)
            _, v_fwd, _ = model.policy(tensors, deterministic=True)
        assert torch.equal(a1, a2) and not torch.allclose(v1, v2)
        torch.testing.assert_close(v_fwd, v1)  # rollout values and bootstrap values agree
        assert v1.shape == (1, 1)
    finally:
        env.close()


def test_warm_start_swaps_in_the_asymmetric_critic_and_keeps_every_other_weight(bc_dir):
    bc = load_policy(bc_dir)
    policy = load_warm_start(bc_dir, value_hidden=64, asymmetric_critic=True)
    assert policy.config.critic_privileged_dim == PRIVILEGED_DIM
    assert isinstance(policy.value_head, PrivilegedCritic)
    for key, value in bc.state_dict().items():
        if not key.startswith("value_head.") and key != "action_head.log_std":
            assert torch.equal(value, policy.state_dict()[key]), key
    back = load_warm_start(bc_dir, asymmetric_critic=False)
    assert back.config.critic_privileged_dim == 0 and not back.asymmetric_critic


def test_ppo_with_the_asymmetric_critic_fits_values_and_saves_an_evaluable_checkpoint(
        bc_dir, tmp_path):
    # Critic-only rollouts (the warm-up) so the actor, and with it the returns, stay put.
    cfg = _cfg(total_env_steps=320, n_steps=64, batch_size=32, n_epochs=4, value_warmup_rollouts=5,
               value_lr=3e-3, asymmetric_critic=True)
    result = train_ppo(cfg, tmp_path / "run", init=bc_dir)
    assert result.steps == 320
    last = load_policy(tmp_path / "run" / "last")
    assert last.asymmetric_critic and last.config.critic_privileged_dim == PRIVILEGED_DIM
    fresh = load_warm_start(bc_dir, seed=cfg.seed, value_hidden=cfg.value_hidden,
                            asymmetric_critic=True)
    # The last rollout's observations and returns, scored by the fresh and the trained critic.
    model = build_ppo(cfg, bc_dir)
    model.policy.load_vla_state(last.state_dict())
    model.learn(64)  # one more rollout (warm-up, returns from the trained critic's GAE)
    buf, n = model.rollout_buffer, model.n_steps
    obs = {k: torch.as_tensor(v).reshape(n, *model.observation_space[k].shape)
           for k, v in buf.observations.items() if k != BC_MEAN_KEY}
    returns = torch.as_tensor(buf.returns).reshape(n)
    model.get_env().close()
    with torch.no_grad():
        def mse(policy):
            return float(((policy.value_head(obs["privileged"],
                                             policy.extractor.normalized_state(obs)).squeeze(-1)
                           - returns) ** 2).mean())
        assert mse(last) < 0.5 * mse(fresh)
    # An evaluation env has no privileged key: the checkpoint still acts.
    last.text_encoder = get_text_encoder("hashing")
    env = gym.make("vla_sim/Reach-v0", image_size=32)
    obs, _ = env.reset(seed=0)
    assert last.act(obs).shape == (4,)
    env.close()


def test_reinforce_trains_the_asymmetric_baseline(tmp_path, monkeypatch):
    from test_reinforce import _tiny_cfg
    from test_reinforce import tiny_bc_checkpoint as reinforce_bc

    from vla_sim.agents.training import reinforce as rf

    torch.set_num_threads(1)
    losses = []
    original = rf.ScalarLogger.scalars

    def record(self, values, step):
        if "train/value_loss" in values:
            losses.append(values["train/value_loss"])
        original(self, values, step)
    monkeypatch.setattr(rf.ScalarLogger, "scalars", record)
    bc = reinforce_bc(tmp_path / "bc")
    cfg = _tiny_cfg(reward="dense", total_env_steps=200, value_warmup_batches=100,
                    value_lr=1e-2, asymmetric_critic=True, tensorboard=False)
    rf.train_reinforce(cfg, tmp_path / "run", init=bc)
    assert len(losses) >= 8
    assert np.mean(losses[-3:]) < 0.5 * losses[0]
    last, start = load_policy(tmp_path / "run" / "last"), load_policy(bc)
    assert last.asymmetric_critic
    assert torch.equal(last.action_head.mean.weight, start.action_head.mean.weight)  # warm-up


def test_frozen_vision_runs_the_convs_without_autograd_and_gives_the_same_features():
    torch.manual_seed(0)
    policy = VLAPolicy(VLAPolicyConfig(**TINY))
    obs = _batch(policy.config)
    before = policy.extractor(obs)
    freeze_vision(policy)
    after = policy.extractor(obs)
    torch.testing.assert_close(before, after, rtol=0, atol=0)
    after.sum().backward()
    assert all(p.grad is None for p in policy.extractor.vision.parameters())
    assert policy.extractor.trunk[0].weight.grad is not None


def test_cached_bc_means_give_the_same_kl_anchor(bc_dir):
    model = build_ppo(_cfg(n_steps=16), bc_dir)
    _, callback = model._setup_learn(16, None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=16)
    model._store_bc_means()
    batch = next(model.rollout_buffer.get(8))
    bc_mean = batch.observations.pop(BC_MEAN_KEY)
    with torch.no_grad():
        dist = model.policy._get_action_dist_from_latent(
            model.policy.extract_features(batch.observations))
        cached = model._kl_to_bc(batch.observations, dist, bc_mean)
        fresh = model._kl_to_bc(batch.observations, dist)
    torch.testing.assert_close(cached, fresh)
    model.get_env().close()
