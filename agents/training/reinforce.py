"""REINFORCE with a learned baseline (actor-critic flavour) on the VLA policy, CleanRL style.

One iteration, top to bottom:
  1. rollout: ``n_envs`` seeded episodes at once from a gymnasium vector env, actions sampled
     from the Gaussian head; steps after an env's episode ended are masked out;
  2. returns: discounted Monte-Carlo ``returns`` G_t = r_t + gamma * G_{t+1} (no bootstrap at the
     time limit: classic REINFORCE);
  3. advantages: ``returns - V(s_t)`` (if ``baseline``; V reads the env's privileged state with
     ``asymmetric_critic``), optionally normalised;
  4. loss: -log_probs * advantages + vf_coef * value MSE - ent_coef * entropy
     (+ a decaying KL toward the frozen BC policy), one Adam step with gradient clipping.
The policy is the same :class:`VLAPolicy` BC trains, and checkpoints are ``save_policy`` folders.
Each run logs env steps/s, time per update and the wall-clock split (``summary.json``) and draws
its success curve (``curve.csv``, ``curves.png``) at every in-training evaluation.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, save_policy
from vla_sim.agents.policies.checkpoint import load_state_strict
from vla_sim.agents.policies.vla import actor_critic_groups
from vla_sim.config import config_to_dict
from vla_sim.language.encoder import get_text_encoder
from vla_sim.utils.seeding import TRAIN_BASE_SEED, episode_seed

from .common import (
    ScalarLogger,
    config_defaults,
    load_trainer_state,
    prepare_run,
    save_training_checkpoint,
)
from .configs import ReinforceConfig
from .loop import fused
from .rl_common import (
    RLResult,
    RunStats,
    SuccessChecks,
    anchor_to_bc,
    bc_schedule,
    clip_groups,
    env_factory,
    freeze_vision,
    load_warm_start,
)

log = logging.getLogger(__name__)



def make_vector_env(cfg: ReinforceConfig, policy_config: VLAPolicyConfig) -> gym.vector.VectorEnv:
    factory = env_factory(env_id=cfg.env_id, policy_config=config_to_dict(policy_config),
                          reward=cfg.reward, gamma=cfg.gamma, robot=cfg.robot,
                          randomization=cfg.randomization, text_encoder=cfg.text_encoder,
                          max_episode_steps=cfg.max_episode_steps,
                          torch_threads=1 if cfg.vector == "async" else 0)
    fns = [factory] * cfg.n_envs
    if cfg.vector == "async":
        return gym.vector.AsyncVectorEnv(fns, context="spawn")
    return gym.vector.SyncVectorEnv(fns)


def _to_tensors(obs: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.asarray(v)).to(device) for k, v in obs.items()}


def discounted_returns(rewards: torch.Tensor, alive: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma * G_{t+1} along time (dim 0) of (T, N) tensors; masked steps are 0."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        running = (rewards[t] + gamma * running) * alive[t]
        returns[t] = running
    return returns


def collect_episodes(envs: gym.vector.VectorEnv, policy: VLAPolicy, seeds: list[int],
                     device: torch.device) -> dict[str, Any]:
    """One episode per sub-env from ``reset(seed=seeds)``. Returns stacked ``obs`` (T*N dicts
    flattened lazily), ``actions`` (T,N,A), ``rewards`` (T,N), ``alive`` (T,N) and per-episode
    ``success`` (N,) and ``length`` (N,)."""
    obs, _ = envs.reset(seed=seeds)
    n = envs.num_envs
    alive = np.ones(n, bool)
    success = np.zeros(n, bool)
    length = np.zeros(n, np.int64)
    steps_obs, steps_act, steps_rew, steps_alive = [], [], [], []
    policy.eval()
    while alive.any():
        batch = _to_tensors(obs, device)
        with torch.no_grad():
            actions = policy.distribution(batch).sample()
        next_obs, rewards, terminated, truncated, infos = envs.step(actions.cpu().numpy())
        steps_obs.append(obs)
        steps_act.append(actions)
        steps_rew.append(np.where(alive, rewards, 0.0))
        steps_alive.append(alive.copy())
        if "is_success" in infos:
            success |= alive & np.asarray(infos["is_success"], bool)
        length += alive
        alive = alive & ~(np.asarray(terminated) | np.asarray(truncated))
        obs = next_obs
    policy.train()
    return {"obs": steps_obs, "actions": torch.stack(steps_act),
            "rewards": torch.as_tensor(np.stack(steps_rew), dtype=torch.float32),
            "alive": torch.as_tensor(np.stack(steps_alive), dtype=torch.float32),
            "success": success, "length": length}


def _flat_obs(steps_obs: list[dict[str, np.ndarray]], keep: np.ndarray, device: torch.device
              ) -> dict[str, torch.Tensor]:
    """(T, N) observation dicts -> one (K, ...) batch of the live steps ``keep`` (T*N bool)."""
    return {k: torch.as_tensor(np.concatenate([o[k] for o in steps_obs])[keep]).to(device)
            for k in steps_obs[0]}


def train_reinforce(cfg: ReinforceConfig, out_dir: str | Path, init: str | Path | None = None,
                    resume: bool = False) -> RLResult:
    """Fine-tune with REINFORCE (+ baseline); writes ``best/``, ``last/`` (save_policy format),
    ``tb/``, ``reinforce_config.json``, the resumable ``checkpoints/last_state``, ``curve.csv``,
    ``curves.png`` and ``summary.json`` (throughput, wall-clock split, the curve).

    ``resume=True`` continues from ``checkpoints/last_state`` (same config and ``init``):
    weights, optimizer, step, batch index and torch RNG are restored and episode seeds follow
    the batch index, so the continuation matches an uninterrupted run."""
    out = Path(out_dir)
    state_dir = out / "checkpoints" / "last_state"
    prepare_run(out, "reinforce_config.json", {**config_to_dict(cfg), "init": str(init)}, resume,
                "REINFORCE", state_dir, defaults=config_defaults(cfg))
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)

    # ---- policy, frozen BC copy, optimiser, env --------------------------------------------------
    policy = load_warm_start(init, VLAPolicyConfig(**cfg.policy) if init is None else None,
                             cfg.init_log_std, cfg.seed, value_hidden=cfg.value_hidden,
                             asymmetric_critic=cfg.asymmetric_critic).to(device)
    policy.text_encoder = get_text_encoder(cfg.text_encoder)
    bc_policy = copy.deepcopy(policy).eval().requires_grad_(False)
    if cfg.freeze_vision:
        freeze_vision(policy)
    optimizer = torch.optim.Adam(
        actor_critic_groups(policy, cfg.lr, cfg.value_lr, cfg.log_std_lr), eps=1e-5,
        **fused(policy.parameters()))
    envs = make_vector_env(cfg, policy.config)
    logger = ScalarLogger(out / "tb" if cfg.tensorboard else None)
    meta = {"trainer": "reinforce", "init": str(init), "reward": cfg.reward, "env_id": cfg.env_id}
    checks = SuccessChecks(out, meta)
    stats = RunStats(out, f"REINFORCE {cfg.env_id} reward={cfg.reward} n_envs={cfg.n_envs}")

    def evaluate(step: int) -> None:
        logger.scalars({"eval/success_rate": checks.check(policy, cfg, step, stats)}, step)

    progress = None
    if cfg.progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=cfg.total_env_steps, desc="reinforce", dynamic_ncols=True)
    t0 = time.perf_counter()
    step, batch_index, next_eval, last_ckpt = 0, 0, cfg.eval_every_env_steps, 0

    def checkpoint() -> None:
        state = {"step": step, "batch_index": batch_index, "next_eval": next_eval,
                 "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                 **checks.state(), "run_stats": stats.state()}
        save_training_checkpoint(state_dir, policy, state, {**meta, "step": step})

    if resume:
        from vla_sim.agents.policies.checkpoint import read_weights

        load_state_strict(policy, read_weights(state_dir / "model.safetensors"), str(state_dir))
        state = load_trainer_state(state_dir)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        step, batch_index = int(state["step"]), int(state["batch_index"])
        next_eval, last_ckpt = int(state["next_eval"]), int(state["step"])
        checks.load_state(state)
        if "run_stats" in state:
            stats = RunStats(out, stats.title, state["run_stats"])
        log.info("resuming REINFORCE from %s at env step %d/%d", state_dir, step, cfg.total_env_steps)
        if progress is not None:
            progress.update(step)
    else:
        evaluate(0)
    try:
        while step < cfg.total_env_steps:
            # ---- 1. rollout: a batch of whole episodes -------------------------------------------
            seeds = [episode_seed(TRAIN_BASE_SEED + 1000 * cfg.seed, batch_index * cfg.n_envs + i)
                     for i in range(cfg.n_envs)]
            with stats.timed("rollout"):
                batch = collect_episodes(envs, policy, seeds, device)
            alive = batch["alive"]
            live = int(alive.sum())
            stats.rollout_steps += live
            update_timer = stats.begin()

            # ---- 2. discounted returns -----------------------------------------------------------
            returns = discounted_returns(batch["rewards"], alive, cfg.gamma)

            # ---- 3. log_probs, values, advantages (live steps only) ------------------------------
            keep = alive.flatten().bool()
            obs = _flat_obs(batch["obs"], keep.numpy(), device)
            actions = batch["actions"].flatten(0, 1)[keep].to(device)
            returns = returns.flatten()[keep].to(device)
            warmup = batch_index < cfg.value_warmup_batches
            features = policy.extractor(obs)
            dist = policy.action_head.distribution(features)
            log_probs, entropy = dist.log_prob(actions), dist.entropy()
            values = policy.value(obs, features, detach=warmup or cfg.critic_detach)
            advantages = returns - values.detach() if cfg.baseline else returns.clone()
            if cfg.normalize_advantages and len(advantages) > 1:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

            # ---- 4. loss and one Adam step -------------------------------------------------------
            policy_loss = -(log_probs * advantages).mean()
            value_loss = 0.5 * ((values - returns) ** 2).mean()
            entropy_loss = -entropy.mean()
            bc_weight = 0.0 if warmup else bc_schedule(cfg.bc_coef, cfg.bc_decay_env_steps, step)
            kl = torch.zeros(())
            if bc_weight > 0:
                with torch.no_grad():
                    bc_dist = bc_policy.action_head.distribution(bc_policy.extractor(obs))
                kl = anchor_to_bc(dist.dist, bc_dist.dist, cfg.bc_anchor)
            if warmup:
                loss = cfg.vf_coef * value_loss
            else:
                loss = (policy_loss + cfg.vf_coef * value_loss + cfg.ent_coef * entropy_loss
                        + bc_weight * kl)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = clip_groups(optimizer, cfg.max_grad_norm)
            optimizer.step()
            stats.end("update", update_timer)
            stats.updates += 1

            # ---- logging, evaluation ------------------------------------------------------------
            step += live
            batch_index += 1
            logger.scalars({
                "train/policy_loss": policy_loss.item(), "train/value_loss": value_loss.item(),
                "train/entropy": -entropy_loss.item(), "train/kl_to_bc": kl.item(),
                "train/bc_weight": bc_weight, "train/grad_norm": float(grad_norm),
                "train/value_warmup": float(warmup),
                "rollout/success_rate": float(batch["success"].mean()),
                "rollout/ep_len_mean": float(batch["length"].mean()),
                "rollout/ep_rew_mean": float(batch["rewards"].sum(0).mean())}, step)
            if progress is not None:
                progress.update(live)
                progress.set_postfix(success=f"{batch['success'].mean():.2f}")
            if cfg.eval_every_env_steps and step >= next_eval and step < cfg.total_env_steps:
                next_eval += cfg.eval_every_env_steps
                evaluate(step)
            if step - last_ckpt >= cfg.checkpoint_every_env_steps and step < cfg.total_env_steps:
                last_ckpt = step
                checkpoint()
        checkpoint()
        evaluate(step)
        save_policy(policy, out / "last", meta={**meta, "step": step})
    finally:
        if progress is not None:
            progress.close()
        logger.close()
        envs.close()
    summary = stats.finish(step, {"trainer": "reinforce", "n_envs": cfg.n_envs,
                                  "vector": cfg.vector, "asymmetric_critic": cfg.asymmetric_critic,
                                  "freeze_vision": cfg.freeze_vision, "best_success": checks.best})
    return RLResult(out, step, time.perf_counter() - t0, checks.history, checks.best,
                    summary)


__all__ = ["ReinforceConfig", "collect_episodes", "discounted_returns", "make_vector_env",
           "train_reinforce"]
