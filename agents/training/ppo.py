"""PPO fine-tuning of a BC policy (Stable-Baselines3), with guards against forgetting.

The SB3 policy (:class:`VLAActorCriticPolicy`) *holds* a :class:`VLAPolicy` and uses its modules
as SB3's pieces: ``features_extractor`` is the VLA extractor, ``action_net`` the Gaussian head
(normalised mean -> env units through the BC action statistics), ``value_net`` the value head,
and the log-std is the head's (normalised units, shifted by ``log(action_std)``). No weights are
copied between class hierarchies, so before any update its deterministic actions are the BC
policy's, and the checkpoint it writes is the same ``save_policy`` format BC writes.

Guards: ``value_warmup_rollouts`` rollouts that train only the value head (on detached
features); a KL(pi || pi_BC) penalty toward the frozen BC policy whose weight decays linearly to 0;
a small initial exploration noise (``init_log_std``).

With ``asymmetric_critic`` the value head is a :class:`PrivilegedCritic` that reads the env's
privileged state (the training envs add ``obs["privileged"]``); the actor is unchanged. With
``perception_weight`` the same privileged state labels every minibatch's frames for the
policy's goal-state and grounding heads (:func:`perception_targets`), and with
``scene_frames`` rendered scene frames at the run's randomization add theirs
(:class:`ScenePerception`). Each run
logs env steps/s, time per update and the wall-clock split, writes ``summary.json``, and draws
its success curve (``curve.csv``, ``curves.png``) at every in-training evaluation.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.utils import explained_variance

from vla_sim.agents.policies import (
    VLAPolicy,
    VLAPolicyConfig,
    save_policy,
)
from vla_sim.agents.policies.sb3 import VLAActorCriticPolicy
from vla_sim.config import config_to_dict
from vla_sim.envs.goal_state import GOAL_STATE_LAYOUT
from vla_sim.envs.wrappers.privileged_state import PRIVILEGED_KEY, PRIVILEGED_LAYOUT, workspace_box
from vla_sim.language.encoder import get_text_encoder
from vla_sim.utils.seeding import TRAIN_BASE_SEED

from .bc import _Batches, grounding_targets, instruction_features, scene_labels
from .common import config_defaults, load_trainer_state, prepare_run, save_training_checkpoint
from .configs import PPOConfig
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

BC_MEAN_KEY = "_bc_mean"
"""Rollout-buffer key of the frozen BC policy's action means (never an env observation)."""


# ----------------------------------------------------------------------------------- algorithm
def perception_targets(policy: VLAPolicy, privileged: torch.Tensor
                       ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor] | None]:
    """(goal-state target, grounding targets) of a batch of privileged vectors, in BC's units:
    the goal state's xyz fields mapped back from [-1, 1] to metres (see
    ``privileged_vector``), its first ``aux_dim`` values for the goal-state head, and its
    camera fields for the grounding head; None for a head the policy lacks."""
    goal = privileged[:, PRIVILEGED_LAYOUT["goal"]].float().clone()
    centre, half = (torch.as_tensor(v, dtype=goal.dtype, device=goal.device)
                    for v in workspace_box())
    for name in ("object_xyz", "destination_xyz"):
        goal[:, GOAL_STATE_LAYOUT[name]] = goal[:, GOAL_STATE_LAYOUT[name]] * half + centre
    cfg = policy.config
    aux = goal[:, :cfg.aux_dim] if policy.aux_head is not None else None
    ground = (grounding_targets(goal, cfg.cameras, cfg.image_size)
              if policy.ground_head is not None else None)
    return aux, ground


class ScenePerception:
    """The perception loss of ``batch`` random scene frames per call (goal-state and grounding
    heads, the frames' own labels; :mod:`vla_sim.data.scene_frames`): many fresh scenes of the
    fine-tuning envs' randomization, where the rollouts bring one per episode."""

    def __init__(self, frames: Any, policy: VLAPolicy, encoder: Any, batch: int, seed: int,
                 device: torch.device | str = "cpu"):
        text = instruction_features(encoder, list(frames.instructions), policy.config)
        self.frames = _Batches(frames, text, policy.config, torch.device(device))
        self.batch, self.rng = int(batch), np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.frames.states)

    def loss(self, policy: VLAPolicy) -> torch.Tensor:
        ids = self.rng.integers(0, len(self), self.batch)
        obs, _ = self.frames.get(ids)
        aux, ground = scene_labels(self.frames, ids, None, policy.aux_head is not None,
                                   policy.ground_head is not None)
        features, spatial = policy.extractor.forward_with_spatial(obs)
        return policy.perception_loss(features, spatial, aux, 1.0, ground, 1.0)


class WarmStartPPO(PPO):
    """SB3 PPO with a value-only warm-up and a decaying KL penalty toward a frozen BC policy.

    ``train()`` follows SB3's PPO.train line by line; the additions are marked "warm start".
    SB3 has no hook for extra loss terms inside the update (the KL anchor, the detached critic,
    per-group clipping, self-imitation), so this one method is overridden; everything else is
    SB3's (rollouts, GAE, the policy class, callbacks). SB3 is pinned to the minor release this
    copy follows, and a test fails when that release's ``PPO.train`` changes. (``train`` times
    the update for :attr:`run_stats` and runs ``_train``, the copy.)
    """
    SB3_TRAIN_SHA256 = "7c8d09940123242f0ac401c5ec2cc858b8bf3339f571c222382f048ffd8306ae"

    def __init__(self, *args: Any, bc_policy: VLAPolicy | None = None, bc_coef: float = 0.0,
                 bc_decay_env_steps: int = 0, bc_anchor: str = "kl",
                 value_warmup_rollouts: int = 0,
                 critic_detach: bool = False, sil_coef: float = 0.0, sil_batches: int = 0,
                 sil_buffer: "SuccessBuffer | None" = None, perception_weight: float = 0.0,
                 pg_coef: float = 1.0, scene: ScenePerception | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pg_coef = float(pg_coef)
        self.scene = scene
        self.perception_weight = float(perception_weight)
        self.sil_coef, self.sil_batches, self.sil_buffer = float(sil_coef), int(sil_batches), sil_buffer
        self.critic_detach = bool(critic_detach)
        self.bc_policy = bc_policy
        if bc_policy is not None:
            self.bc_policy = bc_policy.to(self.device).eval().requires_grad_(False)
        self.bc_coef, self.bc_decay_env_steps = float(bc_coef), int(bc_decay_env_steps)
        self.bc_anchor = bc_anchor
        self.value_warmup_rollouts = int(value_warmup_rollouts)
        self.rollouts_trained = 0
        self.run_stats: RunStats | None = None  # train_ppo sets it: rollout/update timing

    def _update_learning_rate(self, optimizers) -> None:
        """SB3's schedule, times each parameter group's ``lr_scale`` (the critic's own rate)."""
        lr = self.lr_schedule(self._current_progress_remaining)
        self.logger.record("train/learning_rate", lr)
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)

    def bc_weight(self) -> float:
        """Current KL weight: ``bc_coef``, decaying linearly to 0 over ``bc_decay_env_steps`` (> 0)."""
        return bc_schedule(self.bc_coef, self.bc_decay_env_steps, self.num_timesteps)

    def _kl_to_bc(self, obs: dict[str, torch.Tensor], dist,
                  bc_mean: torch.Tensor | None = None) -> torch.Tensor:
        """Mean over the batch of KL(pi(.|s) || pi_BC(.|s)) (or its mean term alone,
        ``bc_anchor="mean"``), summed over action dims; the BC means come from ``bc_mean``
        (see :meth:`_store_bc_means`) when given."""
        head = self.bc_policy.action_head
        with torch.no_grad():
            if bc_mean is None:
                pre = preprocess_obs(obs, self.observation_space,
                                     normalize_images=self.policy.normalize_images)
                bc_mean = head(self.bc_policy.extractor(pre))
            std = head.log_std.exp() * head.action_std  # GaussianHead.distribution's
            bc = torch.distributions.Normal(bc_mean, std.expand_as(bc_mean))
        return anchor_to_bc(dist.distribution, bc, self.bc_anchor)

    def _store_bc_means(self, chunk: int = 256) -> None:
        """The frozen BC policy's action means for every step of the rollout, once, stored as
        an extra rollout-buffer observation (:data:`BC_MEAN_KEY`) that minibatches carry: the
        KL anchor then costs one BC forward per step instead of one per step and epoch (the
        largest part of an update with frozen vision, measured)."""
        buf = self.rollout_buffer
        n = buf.buffer_size * buf.n_envs
        flat = {k: v.reshape(n, *v.shape[2:]) for k, v in buf.observations.items()
                if k != BC_MEAN_KEY}
        means = []
        with torch.no_grad():
            for i in range(0, n, chunk):
                batch = {k: torch.as_tensor(v[i:i + chunk], device=self.device)
                         for k, v in flat.items()}
                pre = preprocess_obs(batch, self.observation_space,
                                     normalize_images=self.policy.normalize_images)
                means.append(self.bc_policy.action_head(self.bc_policy.extractor(pre)).cpu())
        buf.observations[BC_MEAN_KEY] = torch.cat(means).numpy().reshape(
            buf.buffer_size, buf.n_envs, -1)

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        """One Adam step on ``loss``, each parameter group's gradient clipped on its own."""
        self.policy.optimizer.zero_grad()
        loss.backward()
        clip_groups(self.policy.optimizer, self.max_grad_norm)
        self.policy.optimizer.step()

    def _self_imitate(self) -> list[float]:
        """``sil_batches`` steps of ``-sil_coef * log pi(a|s)`` on stored successful steps."""
        buffer = self.sil_buffer
        if self.sil_coef <= 0 or buffer is None or len(buffer) < self.batch_size:
            return []
        losses = []
        for _ in range(self.sil_batches):
            obs, actions = buffer.sample(self.batch_size, self.device)
            dist = self.policy._get_action_dist_from_latent(self.policy.extract_features(obs))
            nll = -dist.log_prob(actions).mean()
            self._optimizer_step(self.sil_coef * nll)
            losses.append(nll.item())
        return losses

    def train(self) -> None:
        timer = (self.run_stats.timed("update") if self.run_stats is not None
                 else contextlib.nullcontext())  # throughput
        with timer:
            self._train()
        if self.run_stats is not None:
            self.run_stats.updates += 1

    def _train(self) -> None:
        """SB3's ``PPO.train`` with the warm-start additions."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        warmup = self.rollouts_trained < self.value_warmup_rollouts  # warm start
        bc_weight = 0.0 if (warmup or self.bc_policy is None) else self.bc_weight()
        entropy_losses, pg_losses, value_losses, clip_fractions, kl_bc = [], [], [], [], []
        perception_losses: list[float] = []
        scene_losses: list[float] = []
        perceive = self.perception_weight > 0 and not warmup  # warm start
        if bc_weight > 0:
            self._store_bc_means()  # warm start
        approx_kl_divs: list[float] = []
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                bc_mean = rollout_data.observations.pop(BC_MEAN_KEY, None)  # warm start
                actions = rollout_data.actions
                # evaluate_actions, unrolled so the critic can read detached features (warm start)
                if perceive:  # warm start: the spatial outputs feed the grounding loss
                    features, spatial = self.policy.vla.extractor.forward_with_spatial(
                        preprocess_obs(rollout_data.observations, self.observation_space,
                                       normalize_images=self.policy.normalize_images))
                else:
                    features = self.policy.extract_features(rollout_data.observations)
                dist = self.policy._get_action_dist_from_latent(features)
                log_prob, entropy = dist.log_prob(actions), dist.entropy()
                detach = warmup or self.critic_detach  # warm start
                values = self.policy.critic_values(rollout_data.observations, features,
                                                   detach).flatten()
                advantages = rollout_data.advantages
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                ratio = torch.exp(log_prob - rollout_data.old_log_prob)
                policy_loss_1 = advantages * ratio
                policy_loss_2 = advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
                policy_loss = -torch.min(policy_loss_1, policy_loss_2).mean()
                pg_losses.append(policy_loss.item())
                clip_fractions.append(((ratio - 1).abs() > clip_range).float().mean().item())
                value_loss = F.mse_loss(rollout_data.returns, values)
                value_losses.append(value_loss.item())
                entropy_loss = -torch.mean(entropy)
                entropy_losses.append(entropy_loss.item())
                if warmup:  # warm start: only the value head learns
                    loss = self.vf_coef * value_loss
                else:
                    loss = (self.pg_coef * policy_loss + self.ent_coef * entropy_loss
                            + self.vf_coef * value_loss)
                    if bc_weight > 0:
                        kl = self._kl_to_bc(rollout_data.observations, dist, bc_mean)
                        kl_bc.append(kl.item())
                        loss = loss + bc_weight * kl
                    if perceive:  # warm start
                        vla = self.policy.vla
                        aux, ground = perception_targets(
                            vla, rollout_data.observations[PRIVILEGED_KEY])
                        perception = vla.perception_loss(features, spatial, aux, 1.0, ground, 1.0)
                        perception_losses.append(perception.item())
                        loss = loss + self.perception_weight * perception
                        if self.scene is not None:
                            scene = self.scene.loss(vla)
                            scene_losses.append(scene.item())
                            loss = loss + self.perception_weight * scene
                with torch.no_grad():
                    log_ratio = log_prob - rollout_data.old_log_prob
                    approx_kl_div = torch.mean((torch.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                    approx_kl_divs.append(approx_kl_div)
                if (not warmup and self.target_kl is not None
                        and approx_kl_div > 1.5 * self.target_kl):
                    continue_training = False
                    break
                self._optimizer_step(loss)  # warm start: actor and critic clipped apart
            self._n_updates += 1
            if not continue_training:
                break
        sil_losses = [] if warmup else self._self_imitate()  # warm start
        self.rollouts_trained += 1
        head = self.policy.vla.action_head
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs) if approx_kl_divs else 0.0)
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_variance(
            self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()))
        self.logger.record("train/std", (head.log_std.exp() * head.action_std).mean().item())
        self.logger.record("train/value_warmup", float(warmup))
        self.logger.record("train/bc_weight", bc_weight)
        if kl_bc:
            self.logger.record("train/kl_to_bc", float(np.mean(kl_bc)))
        if sil_losses:
            self.logger.record("train/sil_nll", float(np.mean(sil_losses)))
        if perception_losses:
            self.logger.record("train/perception_loss", float(np.mean(perception_losses)))
        if scene_losses:
            self.logger.record("train/scene_perception_loss", float(np.mean(scene_losses)))
        if self.sil_buffer is not None:
            self.logger.record("train/sil_buffer_steps", len(self.sil_buffer))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)


# ------------------------------------------------------------------------------- entry points
def make_vec_env(cfg: PPOConfig, policy_config: VLAPolicyConfig):
    """DummyVecEnv (1 env) or SubprocVecEnv (n_envs > 1) of the training env stack; with
    ``backend="ray"``, a RayVecEnv (one long-lived Ray actor per env, any n_envs)."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    ray = cfg.backend == "ray"  # Ray actors get their torch threads from their CPU share
    factory = env_factory(env_id=cfg.env_id, policy_config=config_to_dict(policy_config),
                          reward=cfg.reward, gamma=cfg.gamma, robot=cfg.robot,
                          randomization=cfg.randomization, text_encoder=cfg.text_encoder,
                          max_episode_steps=cfg.max_episode_steps,
                          torch_threads=1 if cfg.n_envs > 1 and not ray else 0)
    fns = [_monitored(factory, Monitor) for _ in range(cfg.n_envs)]
    if ray:
        from .ray_vec_env import RayVecEnv

        vec = RayVecEnv(fns, address=cfg.ray_address)
    else:
        vec = SubprocVecEnv(fns) if cfg.n_envs > 1 else DummyVecEnv(fns)
    vec.seed(TRAIN_BASE_SEED + 1000 * cfg.seed)
    if cfg.normalize_reward:
        from stable_baselines3.common.vec_env import VecNormalize

        vec = VecNormalize(vec, norm_obs=False, norm_reward=True, gamma=cfg.gamma)
    return vec


def _monitored(factory, monitor_cls):
    """Picklable constructor of ``Monitor(factory())`` (episode return, length, success)."""
    return functools.partial(_make_monitored, factory, monitor_cls)


def _make_monitored(factory, monitor_cls):
    return monitor_cls(factory(), info_keywords=("is_success",))


def build_ppo(cfg: PPOConfig, init: str | Path | None, env=None, out_dir: Path | None = None
              ) -> WarmStartPPO:
    """The warm-started PPO model: policy weights from ``init`` (a BC checkpoint folder)."""
    bc = load_warm_start(init, VLAPolicyConfig(**cfg.policy) if init is None else None,
                         cfg.init_log_std, cfg.seed, value_hidden=cfg.value_hidden,
                         asymmetric_critic=cfg.asymmetric_critic)
    env = env if env is not None else make_vec_env(cfg, bc.config)
    model = WarmStartPPO(
        VLAActorCriticPolicy, env, learning_rate=cfg.lr, n_steps=cfg.n_steps,
        batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda, clip_range=cfg.clip_range, ent_coef=cfg.ent_coef,
        vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm, target_kl=cfg.target_kl,
        tensorboard_log=str(out_dir / "tb") if (out_dir and cfg.tensorboard) else None,
        policy_kwargs={"vla_config": config_to_dict(bc.config),
                       "value_lr_scale": cfg.value_lr / cfg.lr,
                       "log_std_lr_scale": (None if cfg.log_std_lr is None
                                            else cfg.log_std_lr / cfg.lr),
                       "perception_lr_scale": (None if cfg.perception_lr is None
                                               else cfg.perception_lr / cfg.lr)}, seed=cfg.seed,
        device=cfg.device, verbose=0,
        bc_policy=copy.deepcopy(bc), bc_coef=cfg.bc_coef, bc_decay_env_steps=cfg.bc_decay_env_steps,
        bc_anchor=cfg.bc_anchor,
        value_warmup_rollouts=cfg.value_warmup_rollouts, critic_detach=cfg.critic_detach,
        sil_coef=cfg.sil_coef, sil_batches=cfg.sil_batches,
        sil_buffer=SuccessBuffer(cfg.sil_buffer_steps, cfg.seed) if cfg.sil_coef > 0 else None,
        perception_weight=cfg.perception_weight, pg_coef=cfg.pg_coef)
    if cfg.perception_weight > 0 and bc.aux_head is None and bc.ground_head is None:
        raise ValueError("perception_weight > 0 needs a policy with a goal-state or grounding "
                         "head (BC with aux_weight > 0 or ground_weight > 0)")
    if model.tensorboard_log is None:
        # SB3 would otherwise make an empty SB3-<time> folder in the system temp dir per run.
        model.set_logger(Logger(folder=None, output_formats=[]))
    model.policy.load_vla_state(bc.state_dict())
    if cfg.freeze_vision:
        freeze_vision(model.policy.vla)
    model.policy.vla.text_encoder = get_text_encoder(cfg.text_encoder)
    return model


SCENE_SEED_OFFSET = 1_000
"""PPO's scene frames use base seed ``SCENE_BASE_SEED + SCENE_SEED_OFFSET + seed``: other
scenes than BC's and DAgger's (``SCENE_BASE_SEED + seed``)."""


def attach_scene_frames(model: WarmStartPPO, cfg: PPOConfig, path: Path) -> float | None:
    """Give ``model`` its scene frames (``cfg.scene_frames`` of them, at ``cfg.randomization``,
    with the policy's cameras and image size), rendered on ``n_envs`` processes into ``path``
    or read back from it (a resume); returns the seconds spent rendering (None: read back)."""
    from vla_sim.data.collect import CollectConfig
    from vla_sim.data.scene_frames import SCENE_BASE_SEED, scene_frames_file

    vla = model.policy.vla
    settings = CollectConfig(env=cfg.env_id, robot=cfg.robot, randomization=cfg.randomization,
                             cameras=tuple(vla.config.cameras), image_size=vla.config.image_size,
                             workers=cfg.n_envs, progress=False)
    frames, spent = scene_frames_file(path, settings, cfg.scene_frames, cfg.scene_views,
                                      SCENE_BASE_SEED + SCENE_SEED_OFFSET + cfg.seed, cfg.n_envs)
    model.scene = ScenePerception(frames, vla, vla.text_encoder, cfg.scene_batch, cfg.seed,
                                  model.device)
    log.info("PPO: %d scene frames at %s (%s)", len(frames.states), cfg.randomization,
             "read back" if spent is None else f"rendered in {spent:.1f} s")
    return spent


class _EvalCallback(BaseCallback):
    """Every ``every`` env steps: success rate of the deterministic policy; best/ is kept."""

    def __init__(self, cfg: PPOConfig, out: Path, meta: dict, every: int):
        super().__init__()
        self.cfg, self.every = cfg, every
        self.checks = SuccessChecks(out, meta)
        self._next = every

    @property
    def best(self) -> float | None:
        return self.checks.best

    @property
    def history(self) -> list[tuple[int, float]]:
        return self.checks.history

    def evaluate_now(self) -> float:
        rate = self.checks.check(self.model.policy.vla, self.cfg, int(self.model.num_timesteps),
                                 self.model.run_stats)
        if hasattr(self.model, "_logger"):  # the logger exists once learn() has started
            self.logger.record("eval/success_rate", rate)
        return rate

    def _on_step(self) -> bool:
        if self.every and self.num_timesteps >= self._next:
            self._next += self.every
            self.evaluate_now()
        return True


class SuccessBuffer:
    """The (observation, executed action) steps of the latest successful training episodes."""

    def __init__(self, max_steps: int, seed: int = 0):
        self.max_steps = int(max_steps)
        self.episodes: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
        self.steps = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.steps

    def add_episode(self, obs: dict[str, np.ndarray], actions: np.ndarray) -> None:
        self.episodes.append((obs, actions))
        self.steps += len(actions)
        while self.steps > self.max_steps and len(self.episodes) > 1:
            self.steps -= len(self.episodes.pop(0)[1])

    def sample(self, n: int, device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        lengths = np.array([len(a) for _, a in self.episodes])
        flat = self.rng.integers(0, lengths.sum(), n)
        bounds = np.cumsum(lengths)
        ep = np.searchsorted(bounds, flat, side="right")
        t = flat - (bounds[ep] - lengths[ep])
        keys = self.episodes[0][0].keys()
        obs = {k: torch.as_tensor(np.stack([self.episodes[e][0][k][i] for e, i in zip(ep, t)]),
                                  device=device) for k in keys}
        actions = torch.as_tensor(np.stack([self.episodes[e][1][i] for e, i in zip(ep, t)]),
                                  device=device, dtype=torch.float32)
        return obs, actions


class _SuccessCollector(BaseCallback):
    """Keeps each training env's current episode (observations, clipped executed actions) and
    hands the successful ones to a :class:`SuccessBuffer`."""

    def __init__(self, buffer: SuccessBuffer):
        super().__init__()
        self.buffer = buffer
        self.current: list[list[tuple[dict[str, np.ndarray], np.ndarray]]] = []

    def _on_step(self) -> bool:
        obs, actions = self.locals["obs_tensor"], self.locals["clipped_actions"]
        dones, infos = self.locals["dones"], self.locals["infos"]
        if not self.current:
            self.current = [[] for _ in range(len(dones))]
        for i, done in enumerate(dones):
            self.current[i].append(({k: v[i].cpu().numpy() for k, v in obs.items()},
                                    np.asarray(actions[i], np.float32)))
            if done:
                steps, self.current[i] = self.current[i], []
                if infos[i].get("is_success", False):
                    self.buffer.add_episode(
                        {k: np.stack([o[k] for o, _ in steps]) for k in steps[0][0]},
                        np.stack([a for _, a in steps]))
        return True


class _RolloutTimer(BaseCallback):
    """Charges each rollout's wall-clock and env steps to ``model.run_stats`` (evaluations
    inside it are charged to evaluation). Last in the callback list, so a checkpoint written
    at the rollout's start is not counted as collecting."""

    def __init__(self):
        super().__init__()
        self._token: tuple[float, float] | None = None
        self._start = 0

    def _on_rollout_start(self) -> None:
        self._token, self._start = self.model.run_stats.begin(), self.model.num_timesteps

    def _on_rollout_end(self) -> None:
        if self._token is not None:
            self.model.run_stats.end("rollout", self._token)
            self.model.run_stats.rollout_steps += self.model.num_timesteps - self._start
            self._token = None

    def _on_step(self) -> bool:
        return True


class _WallClockLimit(BaseCallback):
    """Stops ``learn()`` once ``minutes`` of wall-clock have passed since it was built."""

    def __init__(self, minutes: float):
        super().__init__()
        self.deadline = time.perf_counter() + 60.0 * minutes
        self.hit = False

    def _on_step(self) -> bool:
        self.hit = time.perf_counter() >= self.deadline
        return not self.hit


class _CheckpointCallback(BaseCallback):
    """After each PPO update (checked at the next rollout's start) past ``every`` env steps,
    write ``checkpoints/last_state``: what ``train_ppo(resume=True)`` continues from."""

    def __init__(self, path: Path, every: int, evaluator: _EvalCallback, meta: dict):
        super().__init__()
        self.path, self.every, self.evaluator, self.meta = path, every, evaluator, meta
        self._last = 0

    def _on_rollout_start(self) -> None:
        if self.num_timesteps - self._last >= self.every and self.num_timesteps > 0:
            self._last = self.num_timesteps
            self.save()

    def save(self) -> None:
        model = self.model
        state = {"num_timesteps": int(model.num_timesteps), "n_updates": int(model._n_updates),
                 "rollouts_trained": int(model.rollouts_trained),
                 "optimizer": model.policy.optimizer.state_dict(),
                 **{f"eval_{k}": v for k, v in self.evaluator.checks.state().items()},
                 "eval_next": int(self.evaluator._next)}
        rms = getattr(model.get_env(), "ret_rms", None)
        if rms is not None:  # VecNormalize's return statistics
            state["ret_rms"] = [float(rms.mean), float(rms.var), float(rms.count)]
        if model.run_stats is not None:
            state["run_stats"] = model.run_stats.state()
        save_training_checkpoint(self.path, model.policy.vla, state,
                                 {**self.meta, "step": int(model.num_timesteps)})

    def _on_step(self) -> bool:
        return True


def _restore(model: WarmStartPPO, evaluator: _EvalCallback, path: Path) -> None:
    """Load a ``checkpoints/last_state`` folder into a freshly built model (same config)."""
    from vla_sim.agents.policies.checkpoint import CheckpointMismatchError, read_weights

    try:
        model.policy.load_vla_state(read_weights(path / "model.safetensors"))
    except (OSError, RuntimeError) as exc:
        raise CheckpointMismatchError(f"{path}: unreadable checkpoint ({exc})") from exc
    state = load_trainer_state(path)
    model.policy.optimizer.load_state_dict(state["optimizer"])
    model.num_timesteps = int(state["num_timesteps"])
    model._n_updates = int(state["n_updates"])
    model.rollouts_trained = int(state["rollouts_trained"])
    evaluator.checks.load_state({"best": state["eval_best"], "history": state["eval_history"]})
    evaluator._next = int(state["eval_next"])
    if "run_stats" in state:
        model.run_stats = RunStats(model.run_stats.out, model.run_stats.title, state["run_stats"])
    rms = getattr(model.get_env(), "ret_rms", None)
    if rms is not None and "ret_rms" in state:
        rms.mean, rms.var, rms.count = (float(x) for x in state["ret_rms"])


def train_ppo(cfg: PPOConfig, out_dir: str | Path, init: str | Path | None = None,
              resume: bool = False) -> RLResult:
    """Fine-tune with PPO; writes ``best/`` and ``last/`` (save_policy format), ``tb/``,
    ``ppo_config.json``, the resumable ``checkpoints/last_state``, ``curve.csv`` and
    ``curves.png`` (success vs env steps and wall-clock) and ``summary.json`` (throughput,
    wall-clock split, the curve) to ``out_dir``; logs the throughput line.

    ``resume=True`` continues an interrupted run from ``checkpoints/last_state`` (same config
    and warm start required): weights, optimizer, env-step count, warm-up and evaluation
    bookkeeping are restored; episodes in flight restart from fresh resets, so the continuation
    is faithful but not bit-identical to an uninterrupted run."""
    out = Path(out_dir)
    state_dir = out / "checkpoints" / "last_state"
    prepare_run(out, "ppo_config.json", {**config_to_dict(cfg), "init": str(init)}, resume, "PPO",
                state_dir, defaults=config_defaults(cfg))
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    model = build_ppo(cfg, init, out_dir=out)
    render_s = (attach_scene_frames(model, cfg, out / "scene_frames.npz") or 0.0
                if cfg.scene_frames else 0.0)
    model.run_stats = RunStats(out, f"PPO {cfg.env_id} reward={cfg.reward} n_envs={cfg.n_envs}")
    meta = {"trainer": "ppo", "init": str(init), "reward": cfg.reward, "env_id": cfg.env_id}
    callback = _EvalCallback(cfg, out, meta, cfg.eval_every_env_steps)
    callback.init_callback(model)
    ckpt = _CheckpointCallback(state_dir, cfg.checkpoint_every_env_steps, callback, meta)
    t0 = time.perf_counter()
    if resume:
        _restore(model, callback, state_dir)
        ckpt._last = int(model.num_timesteps)
        log.info("resuming PPO from %s at env step %d/%d", state_dir, model.num_timesteps,
                 cfg.total_env_steps)
    else:
        callback.evaluate_now()  # the warm start's own success rate is the bar to beat
    remaining = max(0, cfg.total_env_steps - int(model.num_timesteps))
    callbacks: list[BaseCallback] = [callback, ckpt]
    if model.sil_buffer is not None:
        callbacks.append(_SuccessCollector(model.sil_buffer))
    # the rendering of the scene frames is part of the budget
    limit = (_WallClockLimit(cfg.max_minutes - render_s / 60.0) if cfg.max_minutes > 0
             else None)
    if limit is not None:
        callbacks.append(limit)
    callbacks.append(_RolloutTimer())  # last: see its docstring
    if remaining:
        model.learn(total_timesteps=remaining, callback=callbacks,
                    progress_bar=cfg.progress, tb_log_name="ppo", reset_num_timesteps=not resume)
    if limit is not None and limit.hit:
        log.info("PPO stopped by max_minutes=%s at env step %d", cfg.max_minutes,
                 model.num_timesteps)
    ckpt.init_callback(model)
    ckpt.save()
    callback.evaluate_now()
    wall = time.perf_counter() - t0
    save_policy(model.policy.vla, out / "last", meta={**meta, "step": int(model.num_timesteps)})
    model.get_env().close()
    summary = model.run_stats.finish(int(model.num_timesteps), {
        "trainer": "ppo", "n_envs": cfg.n_envs, "n_steps": cfg.n_steps,
        "asymmetric_critic": cfg.asymmetric_critic, "freeze_vision": cfg.freeze_vision,
        "best_success": callback.best, "scene_frames_render_s": round(render_s, 2)})
    return RLResult(out, int(model.num_timesteps), wall, callback.history, callback.best,
                    summary)


__all__ = ["PPOConfig", "RLResult", "ScenePerception", "SuccessBuffer", "VLAActorCriticPolicy",
           "WarmStartPPO", "attach_scene_frames", "build_ppo", "make_vec_env", "train_ppo"]
