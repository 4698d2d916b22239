"""Curriculum: move to the next stage (more randomization, a harder task) once the policy's
evaluated success rate reaches a threshold.

A stage names a randomization (a level, or a level scaled by a strength in [0, 1] through
:meth:`RandomizationConfig.scaled`) and optionally an env id (task difficulty, e.g. Reach ->
Push -> PickPlace). :class:`CurriculumScheduler` holds the current stage and advances on
``success_rate >= threshold`` (never past the last stage), logging each advance.

Hooks:
- BC: :meth:`CurriculumScheduler.bc_eval_fn` wraps ``policy -> success at (env_id, randomization)``
  into the ``eval_fn`` that ``train_bc`` calls every ``eval_every_grad_steps`` steps (the demonstrations are
  fixed, so this moves the evaluation, and ``best/``, to harder settings).
  :func:`train_bc_curriculum` is the data curriculum: one dataset per stage, batches drawn from
  the stages reached so far.
- PPO (SB3): :class:`CurriculumCallback` evaluates every ``eval_freq`` calls (or reads the
  episode success buffer) and pushes the new randomization into the training envs with
  ``env_method("set_randomization", ...)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from vla_sim.randomization.config import LEVELS, RandomizationConfig

log = logging.getLogger(__name__)


@dataclass
class CurriculumStage:
    """One stage: ``level`` (a name in LEVELS), scaled by ``strength`` if given; ``env_id``
    (optional) changes the task."""

    level: str = "high"
    strength: float | None = None
    env_id: str | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"unknown randomization level {self.level!r}; valid: {list(LEVELS)}")
        if self.strength is not None and not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {self.strength}")

    def randomization(self) -> RandomizationConfig:
        base = LEVELS[self.level]
        return base if self.strength is None else base.scaled(self.strength)

    @property
    def name(self) -> str:
        r = self.level if self.strength is None else f"{self.level}@{self.strength:.2f}"
        return r if self.env_id is None else f"{self.env_id}:{r}"


def strength_stages(level: str = "high", strengths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
                    env_id: str | None = None) -> list[CurriculumStage]:
    """Stages that scale one level's ranges up step by step."""
    return [CurriculumStage(level, float(s), env_id) for s in strengths]


@dataclass
class CurriculumConfig:
    """When and how to advance."""

    stages: list[CurriculumStage] = field(default_factory=lambda: [
        CurriculumStage("none"), CurriculumStage("low"), CurriculumStage("medium"),
        CurriculumStage("high")])
    """In order, easiest first. Default: the named randomization levels."""
    threshold: float = 0.8
    """Advance when an evaluated success rate is >= this."""
    min_evals_per_stage: int = 1
    """Evaluations at a stage before it may advance (guards against one lucky evaluation)."""

    def __post_init__(self) -> None:
        self.stages = [CurriculumStage(**s) if isinstance(s, dict) else s for s in self.stages]
        if not self.stages:
            raise ValueError("a curriculum needs at least one stage")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.min_evals_per_stage < 1:
            raise ValueError(f"min_evals_per_stage must be >= 1, got {self.min_evals_per_stage}")


@dataclass
class Advance:
    step: int
    success_rate: float
    from_stage: int
    to_stage: int
    to_name: str


class CurriculumScheduler:
    """Current stage + the advance rule. ``update(success, step)`` returns True on an advance."""

    def __init__(self, config: CurriculumConfig | None = None):
        self.config = config or CurriculumConfig()
        self.stage_index = 0
        self.evals_at_stage = 0
        self.history: list[Advance] = []
        self.listeners: list[Callable[["CurriculumScheduler"], None]] = []

    @property
    def stage(self) -> CurriculumStage:
        return self.config.stages[self.stage_index]

    @property
    def finished(self) -> bool:
        """At the last stage (no more advances)."""
        return self.stage_index == len(self.config.stages) - 1

    def randomization(self) -> RandomizationConfig:
        return self.stage.randomization()

    def update(self, success_rate: float, step: int = 0) -> bool:
        """Record one evaluation; advance one stage if ``success_rate >= threshold``, the stage
        has had ``min_evals_per_stage`` evaluations and it is not the last. Logs the advance."""
        self.evals_at_stage += 1
        if (self.finished or success_rate < self.config.threshold
                or self.evals_at_stage < self.config.min_evals_per_stage):
            return False
        old = self.stage_index
        self.stage_index += 1
        self.evals_at_stage = 0
        adv = Advance(int(step), float(success_rate), old, self.stage_index, self.stage.name)
        self.history.append(adv)
        log.info("curriculum: step %d success %.3f >= %.3f: stage %d -> %d (%s)", adv.step,
                 adv.success_rate, self.config.threshold, old, self.stage_index, adv.to_name)
        for listener in self.listeners:
            listener(self)
        return True

    def apply(self, env: Any) -> None:
        """Set the current randomization on a gymnasium env (through ``unwrapped``) or an SB3
        VecEnv (``env_method``). The env id of a stage is for whoever builds envs."""
        cfg = self.randomization()
        if hasattr(env, "env_method"):
            env.env_method("set_randomization", cfg)
        else:
            env.unwrapped.set_randomization(cfg)

    def bc_eval_fn(self, evaluate: Callable[[Any, CurriculumStage], float]
                   ) -> Callable[[Any], float]:
        """An ``eval_fn(policy) -> success`` for ``train_bc``: evaluates at the current stage,
        then updates the scheduler (``Advance.step`` counts evaluations, 1-based)."""
        calls = [0]

        def eval_fn(policy: Any) -> float:
            calls[0] += 1
            success = float(evaluate(policy, self.stage))
            self.update(success, step=calls[0])  # train_bc does not pass its step: count calls
            return success
        return eval_fn

    def state_dict(self) -> dict[str, Any]:
        return {"stage_index": self.stage_index, "evals_at_stage": self.evals_at_stage,
                "history": [a.__dict__ for a in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stage_index = int(state["stage_index"])
        self.evals_at_stage = int(state["evals_at_stage"])
        self.history = [Advance(**a) for a in state["history"]]


@dataclass
class CurriculumBCResult:
    policy: Any
    train_losses: list[float]
    evaluations: list[tuple[int, int, float]]
    """(step, stage index, success) of every evaluation."""
    scheduler: "CurriculumScheduler"


def train_bc_curriculum(stage_data: Sequence[Any], scheduler: "CurriculumScheduler",
                        evaluate: Callable[[Any, CurriculumStage], float], bc_config: Any,
                        eval_every_grad_steps: int = 100, encoder: Any = None) -> CurriculumBCResult:
    """Behaviour cloning with a data curriculum: ``stage_data[i]`` (a ``DemoArrays``) holds the
    demonstrations of stage ``i``; batches come from the stages reached so far, and every
    ``eval_every_grad_steps`` steps ``evaluate(policy, stage)`` at the current stage may advance it.

    Normalisation statistics come from all stages' data (so they do not jump on an advance);
    optimiser, schedule and batches are those of :func:`multitask.train_steps`.
    """
    import numpy as np
    import torch

    from vla_sim.agents.policies.vla import VLAPolicy
    from vla_sim.data.demos import concat_demos

    from .bc import _Batches, instruction_features
    from .common import resolve_device
    from .loop import train_steps

    if len(stage_data) != len(scheduler.config.stages):
        raise ValueError(f"{len(stage_data)} datasets for {len(scheduler.config.stages)} stages")
    cfg = bc_config
    device = resolve_device(cfg.device)
    if encoder is None:
        from vla_sim.language.encoder import get_text_encoder

        encoder = get_text_encoder(cfg.policy.text_encoder)
    merged, ids = concat_demos(list(stage_data))
    merged.check_fits(cfg.policy)
    batches = _Batches(merged, instruction_features(encoder, merged.instructions, cfg.policy),
                       cfg.policy, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        policy = VLAPolicy(cfg.policy)
    policy.set_normalization(merged.states.mean(0), merged.states.std(0),
                             merged.actions.mean(0), merged.actions.std(0))
    policy.to(device)
    evaluations: list[tuple[int, int, float]] = []

    def sample(rng: np.random.Generator):
        pool = np.concatenate(ids[: scheduler.stage_index + 1])
        obs, actions = batches.get(pool[rng.integers(0, len(pool), cfg.batch_size)], rng,
                                   cfg.shift_pad, cfg.color_jitter)
        return obs, actions, {}

    def after_step(step: int, loss: float) -> None:
        if step % eval_every_grad_steps == 0 and step < cfg.steps:
            success = float(evaluate(policy, scheduler.stage))
            evaluations.append((step, scheduler.stage_index, success))
            scheduler.update(success, step)

    losses = train_steps(policy, sample, lambda p, b: p.bc_loss(b[0], b[1]), cfg, log=after_step)
    return CurriculumBCResult(policy, losses, evaluations, scheduler)


try:  # SB3 is a dependency, but keep this module importable without it
    from stable_baselines3.common.callbacks import BaseCallback
except ImportError:  # pragma: no cover
    BaseCallback = object  # type: ignore[assignment,misc]


class CurriculumCallback(BaseCallback):  # type: ignore[misc,valid-type]
    """SB3 callback: every ``eval_freq`` calls, measure success and maybe advance; on an advance
    set the new randomization in ``training_env`` (and any ``extra_envs``).

    Args:
        scheduler: the curriculum.
        eval_fn: ``model -> success rate``; None reads the mean of ``model.ep_success_buffer``
            (episodes whose final info had ``is_success``), cheap but noisy.
        eval_freq: callback calls (vector steps) between checks.
    """

    def __init__(self, scheduler: CurriculumScheduler, eval_fn: Callable[[Any], float] | None = None,
                 eval_freq: int = 2048, extra_envs: Sequence[Any] = (), verbose: int = 0):
        super().__init__(verbose)
        self.scheduler, self.eval_fn, self.eval_freq = scheduler, eval_fn, int(eval_freq)
        self.extra_envs = list(extra_envs)

    def _on_training_start(self) -> None:
        self.scheduler.apply(self.training_env)
        for env in self.extra_envs:
            self.scheduler.apply(env)

    def _measure(self) -> float | None:
        if self.eval_fn is not None:
            return float(self.eval_fn(self.model))
        buf = getattr(self.model, "ep_success_buffer", None)
        if not buf:
            return None
        return float(sum(buf) / len(buf))

    def _on_step(self) -> bool:
        if self.n_calls % self.eval_freq:
            return True
        success = self._measure()
        if success is None:
            return True
        self.logger.record("curriculum/success_rate", success)
        if self.scheduler.update(success, step=self.num_timesteps):
            self.scheduler.apply(self.training_env)
            for env in self.extra_envs:
                self.scheduler.apply(env)
            buf = getattr(self.model, "ep_success_buffer", None)
            if buf is not None:
                buf.clear()  # successes at the old stage say nothing about the new one
            if self.verbose:
                log.info("curriculum: -> stage %d (%s) at %d steps", self.scheduler.stage_index,
                         self.scheduler.stage.name, self.num_timesteps)
        self.logger.record("curriculum/stage", self.scheduler.stage_index)
        return True


__all__ = ["Advance", "CurriculumBCResult", "CurriculumCallback", "CurriculumConfig", "CurriculumScheduler",
           "CurriculumStage", "strength_stages", "train_bc_curriculum"]
