"""What policy to evaluate, as picklable plain data, and how to build it next to an env.

Worker processes cannot receive a live torch model or an expert bound to another process's
PyBullet client, so the evaluator ships a :class:`PolicySpec` and each worker rebuilds the
policy around its own env.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path
from typing import Any, Callable, Protocol

import gymnasium as gym
import numpy as np

DEFAULT_EXPERT_FACTORY = "vla_sim.agents.experts:make_expert"
POLICY_KINDS = ("checkpoint", "expert", "random", "import")


class Policy(Protocol):
    def act(self, obs: dict, deterministic: bool = True) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """A policy by description.

    kind: "checkpoint" (``target`` = checkpoint directory, loaded with
        ``vla_sim.agents.policies.load_policy``), "expert" (the task's scripted expert),
        "random" (uniform samples from the env's action space, seeded per episode) or "import"
        (``target`` = "package.module:function", called as ``function(env)`` -> policy).
    """

    kind: str
    target: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"unknown policy kind {self.kind!r}; expected one of {POLICY_KINDS}")
        if self.kind in ("checkpoint", "import") and not self.target:
            raise ValueError(f"policy kind {self.kind!r} needs a target (got {self.target!r})")

    def describe(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{self.target}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def build(self, env: gym.Env, expert_factory: str = DEFAULT_EXPERT_FACTORY) -> Policy:
        """The live policy for ``env`` (one per env; the env is not stepped here)."""
        if self.kind == "random":
            return RandomPolicy(env.action_space)
        if self.kind == "expert":
            return import_object(expert_factory)(env)
        if self.kind == "import":
            return import_object(self.target)(env)
        return load_checkpoint_policy(self.target)


def load_checkpoint_policy(directory: str | Path) -> Policy:
    """Whatever policy a checkpoint folder holds (the registry dispatches on its policy_type)."""
    from vla_sim.agents.policies import load_policy  # torch import only when needed

    return load_policy(directory)


def parse_policy(text: str | Path) -> PolicySpec:
    """``expert``, ``random``, ``import:pkg.mod:function`` or a checkpoint directory."""
    text = str(text)
    if text in ("expert", "random"):
        return PolicySpec(text)
    if text.startswith("import:"):
        return PolicySpec("import", text[len("import:"):])
    path = Path(text)
    if path.exists():
        return PolicySpec("checkpoint", str(path.resolve()))
    raise FileNotFoundError(
        f"--policy {text!r} is not a checkpoint directory; use a checkpoint path, 'expert', "
        "'random' or 'import:package.module:function'")


def import_object(target: str) -> Callable[..., Any]:
    """Resolve ``"package.module:attribute"``."""
    module_name, sep, attr = target.partition(":")
    if not sep or not attr:
        raise ValueError(f"expected 'package.module:attribute', got {target!r}")
    return getattr(importlib.import_module(module_name), attr)


class RandomPolicy:
    """Uniform actions from a Box action space; reseeded per episode so results do not depend
    on which worker ran which episode."""

    def __init__(self, action_space: gym.spaces.Space, seed: int = 0):
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"random policy needs a Box action space, got {action_space}")
        self.action_space = action_space
        self._low = np.where(np.isfinite(action_space.low), action_space.low, -1.0)
        self._high = np.where(np.isfinite(action_space.high), action_space.high, 1.0)
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, obs: dict, deterministic: bool = True) -> np.ndarray:
        return self._rng.uniform(self._low, self._high).astype(self.action_space.dtype)


def reset_policy(policy: Any, seed: int) -> None:
    """Call ``policy.reset(seed=...)`` or ``policy.reset()`` when the policy has one."""
    reset = getattr(policy, "reset", None)
    if not callable(reset):
        return
    try:
        params = inspect.signature(reset).parameters
    except (TypeError, ValueError):
        params = {}
    if "seed" in params:
        reset(seed=seed)
    else:
        reset()


def _space_mismatch(policy_space: gym.spaces.Space, env_space: gym.spaces.Space) -> str | None:
    """Why ``policy_space`` cannot consume/produce ``env_space`` (None when they fit)."""
    if isinstance(policy_space, gym.spaces.Dict):
        if not isinstance(env_space, gym.spaces.Dict):
            return f"policy expects a Dict space, env gives {type(env_space).__name__}"
        for key, sub in policy_space.spaces.items():
            if key.startswith("instruction_") and "instruction" in env_space.spaces:
                continue  # text features the policy computes from the raw instruction string
            if key not in env_space.spaces:
                return f"policy needs key {key!r}, env has {sorted(env_space.spaces)}"
            why = _space_mismatch(sub, env_space.spaces[key])
            if why:
                return f"{key}: {why}"
        return None
    if type(policy_space) is not type(env_space):
        return f"space types differ ({type(policy_space).__name__} vs {type(env_space).__name__})"
    if isinstance(policy_space, gym.spaces.Box):
        if policy_space.shape != env_space.shape:
            return f"shape {policy_space.shape} vs {env_space.shape}"
        if policy_space.dtype != env_space.dtype:
            return f"dtype {policy_space.dtype} vs {env_space.dtype}"
    return None


def check_policy_spaces(policy: Any, env: gym.Env, where: str = "",
                        obs: dict | None = None) -> None:
    """Raise ValueError if the policy declares spaces that do not fit ``env``.

    Declared ``observation_space`` / ``action_space`` attributes are compared with the env's
    (keys ``instruction_*`` count as derived from the env's ``instruction`` string). A policy
    without an ``action_space`` is probed instead when ``obs`` is given: the shape of
    ``policy.act(obs)`` must be the env's action shape.
    """
    problems = []
    if obs is not None and getattr(policy, "action_space", None) is None:
        shape = np.shape(policy.act(obs, deterministic=True))
        if shape != env.action_space.shape:
            problems.append(f"its actions have shape {shape}, the env's action_space is "
                            f"{env.action_space}")
    for attr in ("observation_space", "action_space"):
        policy_space = getattr(policy, attr, None)
        if policy_space is None:
            continue
        env_space = getattr(env, attr)
        why = _space_mismatch(policy_space, env_space)
        if why:
            problems.append(f"{attr} mismatch ({why}).\n  policy {attr}: {policy_space}\n"
                            f"  env    {attr}: {env_space}")
    if problems:
        raise ValueError(f"policy does not fit {where or 'the env'}: " + "\n".join(problems))


def checkpoint_observation_settings(directory: str) -> tuple[int | None, list[str] | None]:
    """(image size, cameras) a checkpoint's policy reads, None where its config does not say
    (so the evaluator can build envs that render exactly those inputs)."""
    from vla_sim.agents.policies import read_checkpoint_config

    policy = read_checkpoint_config(directory).get("policy") or {}
    size = policy.get("image_size")
    cams = policy.get("cameras")
    return (int(size) if size is not None else None), (list(cams) if cams else None)
