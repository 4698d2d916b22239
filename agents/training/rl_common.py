"""Pieces PPO and REINFORCE share: the training env stack, the BC warm start, text encoders by
name, and the in-training success check.

Training env stack (one per worker): ``gym.make(env_id, ...)`` -> :class:`LanguageRewardWrapper`
(the reward mode) -> :class:`InstructionEmbedding` (the policy's text features). The policy's
config decides image size, cameras and token count, so env and checkpoint always agree.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import torch

from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, load_policy
from vla_sim.language.encoder import get_text_encoder


def load_warm_start(init: str | Path | None, policy_config: VLAPolicyConfig | None = None,
                    init_log_std: float | None = None, seed: int = 0,
                    value_hidden: int | None = None) -> VLAPolicy:
    """The BC policy to start from (``init`` checkpoint folder), or a fresh one from
    ``policy_config`` when ``init`` is None. ``init_log_std`` (normalised action units) replaces
    the head's log-std: BC never trains it, RL needs a sensible exploration noise.
    ``value_hidden`` (None keeps the checkpoint's) rebuilds the critic with that hidden width,
    freshly initialised, when the checkpoint's differs; every other weight is the checkpoint's."""
    if init is not None:
        policy = load_policy(init)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            policy = VLAPolicy(policy_config or VLAPolicyConfig())
    if policy.config.head != "gaussian":
        raise ValueError(f"RL fine-tuning needs a gaussian action head, the policy has "
                         f"head={policy.config.head!r}")
    if policy.value_head is None:
        raise ValueError("RL fine-tuning needs a value head: the checkpoint was trained with "
                         "policy.value_head=false")
    if value_hidden is not None and policy.config.value_hidden != value_hidden:
        policy = _with_value_head(policy, value_hidden, seed)
    if init_log_std is not None:
        with torch.no_grad():
            policy.action_head.log_std.fill_(float(init_log_std))
    return policy.train()


def _with_value_head(policy: VLAPolicy, value_hidden: int, seed: int) -> VLAPolicy:
    """A copy of ``policy`` whose critic has ``value_hidden`` units (fresh weights, seeded)."""
    from vla_sim.agents.policies.checkpoint import load_state_strict

    config = dataclasses.replace(policy.config, value_hidden=int(value_hidden))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rebuilt = VLAPolicy(config)
    state = rebuilt.state_dict()
    state.update({k: v for k, v in policy.state_dict().items() if not k.startswith("value_head.")})
    load_state_strict(rebuilt, state, source="warm-start policy")
    rebuilt.text_encoder = policy.text_encoder
    return rebuilt


def clip_groups(optimizer: torch.optim.Optimizer, max_norm: float) -> float:
    """Clip each parameter group's gradient norm on its own, so the fresh critic's large
    gradients never shrink the actor's step; returns the first (actor) group's norm."""
    norms = [torch.nn.utils.clip_grad_norm_(g["params"], max_norm) for g in optimizer.param_groups]
    return float(norms[0])


def bc_schedule(coef: float, decay_steps: int, step: int) -> float:
    """Weight of the KL toward the BC policy at env ``step``: ``coef``, decaying linearly to 0
    over ``decay_steps`` when that is > 0."""
    return coef if not decay_steps else coef * max(0.0, 1.0 - step / decay_steps)


def make_training_env(env_id: str, policy_config: dict, reward: str = "language",
                      gamma: float = 0.99, robot: str = "panda", randomization: str = "low",
                      text_encoder: str = "default", max_episode_steps: int | None = None,
                      env_kwargs: dict | None = None, torch_threads: int = 1) -> gym.Env:
    """One training env (picklable through :func:`env_factory` for SubprocVecEnv workers)."""
    import vla_sim  # noqa: F401  (registers env ids)
    from vla_sim.envs.wrappers.instruction_embedding import InstructionEmbedding
    from vla_sim.envs.wrappers.language_reward import LanguageRewardWrapper

    if torch_threads > 0:
        torch.set_num_threads(torch_threads)  # workers must not oversubscribe the CPU
    cfg = VLAPolicyConfig(**policy_config)
    kwargs = dict(robot=robot, image_size=cfg.image_size, cameras=tuple(cfg.cameras),
                  randomization=randomization, reward_type="dense", **(env_kwargs or {}))
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    env = gym.make(env_id, **kwargs)
    encoder = get_text_encoder(text_encoder)
    language = None
    if reward in ("language", "mixed"):
        from vla_sim.language.reward import LanguageReward

        language = LanguageReward(encoder=encoder, gamma=gamma)
    env = LanguageRewardWrapper(env, mode=reward, reward=language, gamma=gamma)
    return InstructionEmbedding(env, encoder=encoder, max_tokens=cfg.max_tokens,
                                tokens=cfg.use_tokens)


def env_factory(**kwargs: Any) -> Callable[[], gym.Env]:
    """A picklable zero-argument constructor of :func:`make_training_env`."""
    return functools.partial(make_training_env, **kwargs)


@dataclass
class RLResult:
    """What an RL run did: env steps used, wall-clock, (env step, success rate) evaluations."""

    out_dir: Path
    steps: int
    wall_s: float
    eval_history: list[tuple[int, float]]
    best_success: float | None


def eval_env_kwargs(cfg: Any, policy: VLAPolicy) -> dict[str, Any]:
    """``gym.make`` arguments for an RL run's in-training success check: the run's robot,
    randomization and time limit, the policy's cameras and image size."""
    kwargs: dict[str, Any] = {"robot": cfg.robot, "randomization": cfg.randomization,
                              "image_size": policy.config.image_size,
                              "cameras": tuple(policy.config.cameras)}
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    return kwargs


__all__ = ["RLResult", "bc_schedule",
           "clip_groups", "env_factory", "eval_env_kwargs", "load_warm_start",
           "make_training_env"]
