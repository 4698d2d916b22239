"""Pieces PPO and REINFORCE share: the training env stack, the BC warm start (with the
asymmetric critic and the frozen vision option), the in-training success check, and each run's
timing, success curve and summary.

Training env stack (one per worker): ``gym.make(env_id, ...)`` -> :class:`LanguageRewardWrapper`
(the reward mode) -> :class:`InstructionEmbedding` (the policy's text features) [->
:class:`PrivilegedObservation` when the policy has an asymmetric critic]. The policy's config
decides image size, cameras, token count and the privileged input, so env and checkpoint always
agree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, load_policy
from vla_sim.language.encoder import get_text_encoder

from .configs import BC_ANCHORS

log = logging.getLogger(__name__)


def load_warm_start(init: str | Path | None, policy_config: VLAPolicyConfig | None = None,
                    init_log_std: float | None = None, seed: int = 0,
                    value_hidden: int | None = None,
                    asymmetric_critic: bool | None = None) -> VLAPolicy:
    """The BC policy to start from (``init`` checkpoint folder), or a fresh one from
    ``policy_config`` when ``init`` is None. ``init_log_std`` (normalised action units) replaces
    the head's log-std: BC never trains it, RL needs a sensible exploration noise.
    ``value_hidden`` (None keeps the checkpoint's) and ``asymmetric_critic`` (None keeps the
    checkpoint's kind; True: the critic reads the env's privileged state, PRIVILEGED_DIM values,
    see :class:`~vla_sim.agents.policies.vla.PrivilegedCritic`) rebuild the critic, freshly
    initialised, when the checkpoint's differs; every other weight is the checkpoint's."""
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
    critic = {}
    if value_hidden is not None and policy.config.value_hidden != value_hidden:
        critic["value_hidden"] = int(value_hidden)
    if asymmetric_critic is not None:
        from vla_sim.envs.wrappers.privileged_state import PRIVILEGED_DIM

        dim = PRIVILEGED_DIM if asymmetric_critic else 0
        if policy.config.critic_privileged_dim != dim:
            critic["critic_privileged_dim"] = dim
    if critic:
        policy = _with_value_head(policy, critic, seed)
    if init_log_std is not None:
        with torch.no_grad():
            policy.action_head.log_std.fill_(float(init_log_std))
    return policy.train()


def _with_value_head(policy: VLAPolicy, critic: dict[str, Any], seed: int) -> VLAPolicy:
    """A copy of ``policy`` whose critic is rebuilt with the ``critic`` config fields
    (``value_hidden``, ``critic_privileged_dim``), fresh weights, seeded."""
    from vla_sim.agents.policies.checkpoint import load_state_strict

    config = dataclasses.replace(policy.config, **critic)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rebuilt = VLAPolicy(config)
    state = rebuilt.state_dict()
    state.update({k: v for k, v in policy.state_dict().items() if not k.startswith("value_head.")})
    load_state_strict(rebuilt, state, source="warm-start policy")
    rebuilt.text_encoder = policy.text_encoder
    return rebuilt


def freeze_vision(policy: VLAPolicy) -> None:
    """Keep the camera encoders at their current weights and run them without autograd, so an
    update never back-propagates through the convs (the cheap part of RL stays cheap). The
    language vector then reaches the trunk directly but no longer through the FiLM layers."""
    policy.extractor.vision.requires_grad_(False)
    policy.extractor.frozen_vision = True


def clip_groups(optimizer: torch.optim.Optimizer, max_norm: float) -> float:
    """Clip each parameter group's gradient norm on its own, so the fresh critic's large
    gradients never shrink the actor's step; returns the first (actor) group's norm."""
    norms = [torch.nn.utils.clip_grad_norm_(g["params"], max_norm) for g in optimizer.param_groups]
    return float(norms[0])


def anchor_to_bc(dist: torch.distributions.Normal, bc: torch.distributions.Normal,
                 mode: str = "kl") -> torch.Tensor:
    """The pull toward the frozen BC policy, mean over the batch, summed over action dims.
    ``kl``: KL(pi || pi_BC), which also holds pi's std at BC's; ``mean``: only the KL's mean
    term, ``(mu - mu_BC)^2 / (2 sigma_BC^2)``, so the exploration std is free to move."""
    if mode == "kl":
        return torch.distributions.kl_divergence(dist, bc).sum(-1).mean()
    if mode == "mean":
        return (0.5 * ((dist.mean - bc.mean) / bc.stddev) ** 2).sum(-1).mean()
    raise ValueError(f"bc_anchor must be one of {BC_ANCHORS}, got {mode!r}")


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
    from vla_sim.envs.wrappers.privileged_state import PRIVILEGED_DIM, PrivilegedObservation

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
    env = InstructionEmbedding(env, encoder=encoder, max_tokens=cfg.max_tokens,
                               tokens=cfg.use_tokens)
    if cfg.critic_privileged_dim:  # the asymmetric critic's input; the actor never reads it
        if cfg.critic_privileged_dim != PRIVILEGED_DIM:
            raise ValueError(f"the policy's critic reads {cfg.critic_privileged_dim} privileged "
                             f"values, this env version provides {PRIVILEGED_DIM}")
        env = PrivilegedObservation(env)
    return env


def env_factory(**kwargs: Any) -> Callable[[], gym.Env]:
    """A picklable zero-argument constructor of :func:`make_training_env`."""
    return functools.partial(make_training_env, **kwargs)


@dataclass
class RLResult:
    """What an RL run did: env steps used, wall-clock, (env step, success rate) evaluations,
    and the run's timing and curve (:meth:`RunStats.summary`, also ``summary.json``)."""

    out_dir: Path
    steps: int
    wall_s: float
    eval_history: list[tuple[int, float]]
    best_success: float | None
    summary: dict[str, Any] = field(default_factory=dict)


TIMED = ("rollout", "update", "eval")
"""Where an RL run's wall-clock goes: collecting env steps, gradient updates, success checks
(the rest: setup, checkpoints, the final save)."""
SUMMARY_JSON = "summary.json"


class RunStats:
    """One RL run's wall-clock split (:data:`TIMED`), env steps collected, updates, and its
    success curve. Every :meth:`add_point` rewrites ``curve.csv`` and ``curves.png`` in the run
    folder, so an interrupted run keeps its curve; :meth:`finish` logs the throughput and
    writes ``summary.json``. :meth:`state` / ``RunStats(..., state=...)`` carry it across a
    resume (the wall-clock axis continues where the run stopped)."""

    def __init__(self, out: Path, title: str, state: dict[str, Any] | None = None):
        state = state or {}
        self.out, self.title = Path(out), title
        self.t0 = time.perf_counter() - float(state.get("wall_s", 0.0))
        self.seconds = {k: float(state.get(f"{k}_s", 0.0)) for k in TIMED}
        self.rollout_steps = int(state.get("rollout_steps", 0))
        self.updates = int(state.get("updates", 0))
        self.curve: list[dict[str, Any]] = [dict(p) for p in state.get("curve", [])]

    def wall(self) -> float:
        """Seconds since the run started (across resumes)."""
        return time.perf_counter() - self.t0

    def begin(self) -> tuple[float, float]:
        """A token for :meth:`end`: the time now and the seconds charged so far."""
        return time.perf_counter(), sum(self.seconds.values())

    def end(self, kind: str, token: tuple[float, float]) -> None:
        """Charge the wall-clock since ``token`` to ``kind`` (one of :data:`TIMED`), minus the
        time charged to other kinds meanwhile (an evaluation inside a rollout is not rollout)."""
        t, charged = token
        self.seconds[kind] += time.perf_counter() - t - (sum(self.seconds.values()) - charged)

    @contextlib.contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        """:meth:`begin` and :meth:`end` around a block."""
        token = self.begin()
        try:
            yield
        finally:
            self.end(kind, token)

    def add_point(self, env_steps: int, success: float, episodes: int) -> dict[str, Any]:
        """Record one success check (with its 95% Wilson interval) and redraw the curve."""
        from vla_sim.evaluation.stats import wilson_interval
        from vla_sim.utils.plots import CURVE_CSV, CURVES_PNG, plot_success_curves, write_curve_csv

        lo, hi = wilson_interval(round(success * episodes), episodes)
        point = {"env_steps": int(env_steps), "wall_s": round(self.wall(), 3),
                 "success": float(success), "ci_low": lo, "ci_high": hi,
                 "episodes": int(episodes)}
        self.curve.append(point)
        with self.timed("eval"):  # drawing is part of the evaluation's cost
            write_curve_csv(self.out / CURVE_CSV, self.curve)
            try:
                plot_success_curves(self.curve, self.out / CURVES_PNG, self.title)
            except ImportError as exc:  # matplotlib missing: the CSV still holds the curve
                log.warning("curves.png not drawn (%s)", exc)
        return point

    def state(self) -> dict[str, Any]:
        """Plain data for a resumable checkpoint."""
        return {"wall_s": self.wall(), **{f"{k}_s": v for k, v in self.seconds.items()},
                "rollout_steps": self.rollout_steps, "updates": self.updates,
                "curve": [dict(p) for p in self.curve]}

    def summary(self, env_steps: int) -> dict[str, Any]:
        """Throughput and where the wall-clock went."""
        wall = max(self.wall(), 1e-9)
        rollout_s, update_s = self.seconds["rollout"], self.seconds["update"]
        return {
            "env_steps": int(env_steps), "wall_s": round(wall, 3),
            "env_steps_per_s": round(env_steps / wall, 3),
            "rollout_env_steps_per_s": round(self.rollout_steps / rollout_s, 3)
            if rollout_s > 0 else None,
            "updates": self.updates,
            "update_s_mean": round(update_s / self.updates, 4) if self.updates else None,
            **{f"{k}_s": round(v, 3) for k, v in self.seconds.items()},
            **{f"{k}_fraction": round(v / wall, 4) for k, v in self.seconds.items()},
            "other_fraction": round(max(0.0, 1.0 - sum(self.seconds.values()) / wall), 4),
            "curve": self.curve,
        }

    def finish(self, env_steps: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Log the throughput line and write ``summary.json``; returns the summary."""
        from vla_sim.utils.io import atomic_write_json

        summary = {**self.summary(env_steps), **(extra or {})}
        log.info(format_throughput(self.title, summary))
        atomic_write_json(self.out / SUMMARY_JSON, summary)
        return summary


def format_throughput(title: str, s: dict[str, Any]) -> str:
    """One line: env steps/s (rollouts and overall), time per update, wall-clock split."""
    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    return (f"{title}: {s['env_steps']} env steps in {s['wall_s']:.1f} s; "
            f"{num(s['rollout_env_steps_per_s'], '.1f')} env steps/s while collecting, "
            f"{s['env_steps_per_s']:.1f} overall; {s['updates']} updates, "
            f"{num(s['update_s_mean'], '.3f')} s each; wall-clock: "
            f"rollouts {s['rollout_fraction']:.0%}, updates {s['update_fraction']:.0%}, "
            f"evaluation {s['eval_fraction']:.0%}, other {s['other_fraction']:.0%}")


def eval_env_kwargs(cfg: Any, policy: VLAPolicy) -> dict[str, Any]:
    """``gym.make`` arguments for an RL run's in-training success check: the run's robot,
    randomization and time limit, the policy's cameras and image size."""
    kwargs: dict[str, Any] = {"robot": cfg.robot, "randomization": cfg.randomization,
                              "image_size": policy.config.image_size,
                              "cameras": tuple(policy.config.cameras)}
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    return kwargs


@dataclass
class SuccessChecks:
    """An RL run's in-training success checks: every (env step, rate), and ``best/`` saved at
    the highest rate. One copy for PPO, REINFORCE and RLPD; its :meth:`state` goes into the
    trainer state so a resumed run keeps its curve and its best."""

    out: Path
    meta: dict[str, Any]
    history: list[tuple[int, float]] = field(default_factory=list)
    best: float | None = None

    def check(self, policy: VLAPolicy, cfg: Any, step: int, stats: RunStats | None) -> float:
        """Measure the deterministic policy's success rate now (timed as evaluation), then
        :meth:`record` it; the caller logs it where its logger lives."""
        from vla_sim.evaluation.success import success_rate

        with stats.timed("eval") if stats is not None else contextlib.nullcontext():
            rate = success_rate(policy, cfg.env_id, cfg.eval_episodes,
                                eval_env_kwargs(cfg, policy))
        if stats is not None:
            stats.add_point(step, rate, cfg.eval_episodes)
        self.record(policy, step, rate)
        return rate

    def record(self, policy: VLAPolicy, step: int, rate: float) -> None:
        from vla_sim.agents.policies import save_policy

        self.history.append((int(step), float(rate)))
        if self.best is None or rate > self.best:
            self.best = float(rate)
            save_policy(policy, self.out / "best", meta={**self.meta, "step": step,
                                                         "best_kind": "success",
                                                         "best_metric": rate})

    def state(self) -> dict[str, Any]:
        return {"history": [[int(s), float(r)] for s, r in self.history], "best": self.best}

    def load_state(self, state: dict[str, Any]) -> None:
        self.history = [(int(s), float(r)) for s, r in state["history"]]
        self.best = None if state["best"] is None else float(state["best"])


__all__ = ["SUMMARY_JSON", "TIMED", "RLResult", "RunStats", "SuccessChecks", "bc_schedule",
           "clip_groups",
           "env_factory", "eval_env_kwargs", "format_throughput", "freeze_vision",
           "load_warm_start", "make_training_env"]
