"""Success-rate evaluation of a policy over tasks, instruction splits and randomization levels.

Episode ``i`` of every (task, split, level) cell resets with ``episode_seed(base_seed, i)``, so
a result is the same whatever the backend, the number of workers or the order episodes finish
in. Workers are spawned processes or Ray actors (``backend``, see vla_sim.utils.workers), started
once per evaluation: each checks the policy against the envs, keeps the env and policy of every
cell it has run, and serves all cells' jobs (and the failure re-runs for videos).

Probe ``swap`` (language sensitivity): every episode is run a second time from the same seed with
the env's ``swap_object`` reset option, the same scene with the instruction naming another object
of the scene and success judged on that object. The report shows the "obeyed" rate beside the
success rate, and how often the policy did the original (unswapped) task anyway: a policy that
ignores language, or binds the wrong object, scores low on the first and high on the second.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tempfile
import time
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import gymnasium as gym
import numpy as np

from vla_sim.evaluation.policies import (
    DEFAULT_EXPERT_FACTORY,
    PolicySpec,
    check_policy_spaces,
    import_object,
    reset_policy,
)
from vla_sim.evaluation.stats import wilson_interval
from vla_sim.language.instructions import SPLITS
from vla_sim.randomization.config import LEVELS as RANDOMIZATION_LEVELS
from vla_sim.randomization.config import resolve_randomization
from vla_sim.utils.fingerprint import fingerprint
from vla_sim.utils.io import _json_default
from vla_sim.utils.seeding import EVAL_BASE_SEED, episode_seed
from vla_sim.utils.workers import ShippedFolder, WorkerPool, check_backend, ship_folder

LEVELS = tuple(RANDOMIZATION_LEVELS)
"""Named randomization levels; a cell's level may also be a YAML file of RandomizationConfig
fields (e.g. ``medium`` with one factor at ``low``'s value: ``benchmarks/randomization_ablation.py``)."""


def _is_yaml(level: str) -> bool:
    return str(level).endswith((".yaml", ".yml"))
RECORD_MODES = ("none", "first", "failures", "all")
PROBES = ("swap",)
SWAP_OPTIONS = {"swap_object": True}  # the env's reset option the swap probe uses

# A policy to evaluate: a spec (works with any number of workers) or a picklable callable
# ``factory(env) -> policy`` (a module-level function; lambdas only work with workers=1).
PolicyFactory = Union[PolicySpec, Callable[[gym.Env], Any]]


@dataclasses.dataclass
class EvalConfig:
    """What to evaluate and how.

    Cells: every combination of ``env_ids`` x ``splits`` x ``randomization`` gets ``episodes``
    episodes with seeds ``episode_seed(base_seed, 0..episodes-1)``.
    """

    # --- Cells ---
    env_ids: list[str] = dataclasses.field(default_factory=lambda: ["vla_sim/Reach-v0"])
    robot: str = "panda"
    episodes: int = 10
    splits: list[str] = dataclasses.field(default_factory=lambda: ["train", "heldout"])
    randomization: list[str] = dataclasses.field(default_factory=lambda: ["low"])
    base_seed: int = EVAL_BASE_SEED
    # --- Env ---
    image_size: int = 64
    cameras: list[str] = dataclasses.field(default_factory=lambda: ["front"])
    max_episode_steps: Optional[int] = None  # None: the task's default time limit
    # --- Execution ---
    workers: int = 1  # parallel workers (1 with backend process: this process)
    backend: str = "process"  # process | ray (Ray actors; pip install 'vla-sim[ray]')
    ray_address: str = ""  # Ray cluster to join (host:port, auto); empty: a local Ray
    alignment: bool = True  # compare each action with the scripted expert's, where one exists
    expert_factory: str = DEFAULT_EXPERT_FACTORY  # "module:function", function(env) -> expert
    # --- Videos (only recorded episodes pay for env.render()) ---
    video_dir: Optional[str] = None  # None: no videos
    record: str = "first"  # "none" | "first" (first `videos`) | "failures" | "all"
    videos: Optional[int] = 2  # at most this many videos per cell; None: no limit
    render_size: int = 256
    fps: int = 20
    # --- Probes ---
    probe: Optional[str] = None  # "swap": also run each episode with the instruction swapped
    # --- Actions ---
    sample_actions: bool = False
    """Sample actions from the policy's distribution (seeded per episode), not its mode.
    The same seeds give the same episodes. Where a policy's mean action is ~0 it holds still
    for good; a sample moves on."""
    action_steps: Optional[int] = None
    """Actions of each planned chunk a chunking policy executes before it looks again (its
    ``policy.action_steps``, 1..``policy.action_chunk``); None: the checkpoint's own."""

    def __post_init__(self) -> None:
        if isinstance(self.env_ids, str):
            self.env_ids = [self.env_ids]
        if not self.env_ids:
            raise ValueError("env_ids is empty; give at least one env id, e.g. vla_sim/Reach-v0")
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        bad = [s for s in self.splits if s not in SPLITS]
        if bad or not self.splits:
            raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {self.splits}")
        bad = [lv for lv in self.randomization if lv not in LEVELS and not _is_yaml(lv)]
        if bad or not self.randomization:
            raise ValueError(f"randomization levels must come from {LEVELS} or be YAML files "
                             f"of RandomizationConfig fields, got {self.randomization}")
        for lv in self.randomization:
            if _is_yaml(lv):
                if not Path(lv).is_file():
                    raise FileNotFoundError(f"randomization file {lv!r} does not exist")
                resolve_randomization(lv)  # a bad field fails here, not in a worker
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        check_backend(self.backend, self.ray_address)
        if self.record not in RECORD_MODES:
            raise ValueError(f"record must be one of {RECORD_MODES}, got {self.record!r}")
        if self.videos is not None and self.videos < 0:
            raise ValueError(f"videos must be >= 0 or None, got {self.videos}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if self.probe is not None and self.probe not in PROBES:
            raise ValueError(f"probe must be one of {PROBES} or None, got {self.probe!r}")
        if self.action_steps is not None and self.action_steps < 1:
            raise ValueError(f"action_steps must be >= 1 or None, got {self.action_steps}")
        if self.image_size < 8 or self.render_size < 8:
            raise ValueError(f"image_size and render_size must be >= 8, got "
                             f"{self.image_size} and {self.render_size}")

    def cells(self) -> list[tuple[str, str, str]]:
        """(env_id, split, level) in report order."""
        return [(e, s, lv) for e in self.env_ids for s in self.splits for lv in self.randomization]

    def seeds(self) -> list[int]:
        return [episode_seed(self.base_seed, i) for i in range(self.episodes)]

    def env_config(self) -> dict[str, Any]:
        """The settings that decide which scenes the episodes show (for reports)."""
        keys = ("env_ids", "robot", "splits", "randomization", "image_size", "cameras",
                "max_episode_steps", "base_seed", "episodes")
        return {k: getattr(self, k) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for reports, without where it ran (``backend``, ``ray_address``: a
        machine's, kept under the report's ``timing``), so re-running a report as a reference
        never joins the old run's cluster."""
        d = dataclasses.asdict(self)
        for key in EXECUTION_ONLY:
            d.pop(key)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown EvalConfig keys {unknown}; known: {sorted(names)}")
        return cls(**data)


EXECUTION_ONLY = ("backend", "ray_address")  # EvalConfig fields reports leave out
# What a checkpoint folder's policy is rebuilt from (weights and configs, never pickles: a
# training run's last/ also holds its optimizer state, which workers do not need).
CHECKPOINT_SUFFIXES = (".safetensors", ".json", ".yaml")


@dataclasses.dataclass
class EpisodeRecord:
    """One evaluated episode. ``time_to_success`` is in env steps (None if never successful);
    alignment fields are None when no expert exists for the task. ``probe_*`` fields (None
    without a probe): the swapped instruction, whether the policy completed it ("obeyed"),
    whether the original task's predicate held at the probe episode's end, and its length."""

    env_id: str
    split: str
    level: str
    index: int
    seed: int
    task: Optional[str]
    instruction: str
    success: bool
    length: int
    episode_return: float
    time_to_success: Optional[int]
    first_frame_hash: str
    randomization_hash: str
    alignment_cos: Optional[float] = None
    alignment_sign: Optional[float] = None
    probe_instruction: Optional[str] = None
    probe_obeyed: Optional[bool] = None
    probe_did_original: Optional[bool] = None
    probe_length: Optional[int] = None
    video: Optional[str] = None  # path relative to the video dir
    wall_s: float = 0.0

    @property
    def cell(self) -> tuple[str, str, str]:
        return (self.env_id, self.split, self.level)

    def to_dict(self) -> dict[str, Any]:
        """Plain data without ``wall_s`` (reports keep timings apart, under ``timing``)."""
        d = dataclasses.asdict(self)
        d["return"] = d.pop("episode_return")
        d.pop("wall_s")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EpisodeRecord":
        d = dict(d)
        d["episode_return"] = d.pop("return")
        return cls(**d)


@dataclasses.dataclass
class CellSummary:
    """Aggregates over the episodes of one (env, split, level) cell. With a probe, ``obeyed``
    counts probe episodes that completed the swapped instruction and ``did_original`` those that
    ended with the original task done anyway, each with a 95% Wilson interval."""

    env_id: str
    split: str
    level: str
    task: Optional[str]
    episodes: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    mean_length: float
    mean_return: float
    mean_time_to_success: Optional[float]
    alignment_cos: Optional[float]
    alignment_sign: Optional[float]
    grid_video: Optional[str] = None
    probe: Optional[str] = None
    probe_episodes: Optional[int] = None
    obeyed: Optional[int] = None
    obeyed_rate: Optional[float] = None
    obeyed_ci_low: Optional[float] = None
    obeyed_ci_high: Optional[float] = None
    did_original: Optional[int] = None
    did_original_rate: Optional[float] = None
    did_original_ci_low: Optional[float] = None
    did_original_ci_high: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class EvalResult:
    config: EvalConfig
    policy: dict[str, Any]
    episodes: list[EpisodeRecord]
    cells: list[CellSummary]
    fingerprint: dict[str, Any]
    timing: dict[str, Any]
    preview_png: Optional[bytes] = None  # one frame for the HTML report

    def cell(self, env_id: str, split: str, level: str) -> CellSummary:
        for c in self.cells:
            if (c.env_id, c.split, c.level) == (env_id, split, level):
                return c
        raise KeyError(f"no cell {(env_id, split, level)}; have {[c_key(c) for c in self.cells]}")

    def to_dict(self) -> dict[str, Any]:
        """Everything in the report; ``timing`` is the only part that varies between reruns."""
        return {
            "policy": self.policy,
            "config": self.config.to_dict(),
            "env_config": self.config.env_config(),
            "seeds": self.config.seeds(),
            "fingerprint": self.fingerprint,
            "cells": [c.to_dict() for c in self.cells],
            "episodes": [e.to_dict() for e in self.episodes],
            "timing": {**self.timing, "episode_wall_s": [e.wall_s for e in self.episodes]},
        }


def c_key(c: CellSummary) -> tuple[str, str, str]:
    return (c.env_id, c.split, c.level)


# ----------------------------------------------------------------------------- hashing

def first_frame_hash(obs: dict[str, Any]) -> str:
    """Short SHA-256 of the first observation's arrays (image, state, wrist image, ...).

    Two runs with equal hashes started from the same scene, pixel for pixel.
    """
    h = hashlib.sha256()
    for key in sorted(obs):
        value = obs[key]
        if isinstance(value, np.ndarray):
            h.update(key.encode())
            h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()[:16]


def canonical_json(obj: Any) -> str:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def randomization_hash(sample: Any) -> str:
    """Short SHA-256 of the canonical JSON of a randomization sample."""
    return hashlib.sha256(canonical_json(sample).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- one episode

def make_eval_env(config: EvalConfig, env_id: str, split: str, level: str) -> gym.Env:
    """The env of one cell. Always ``render_mode="rgb_array"``: rendering happens only when
    ``env.render()`` is called, so unrecorded episodes do not pay for it and recorded ones see
    exactly the same observations."""
    import vla_sim  # noqa: F401  (registers the env ids)

    try:
        import vla_sim.envs  # noqa: F401
    except ImportError:
        pass
    kwargs: dict[str, Any] = dict(
        robot=config.robot, image_size=config.image_size, cameras=tuple(config.cameras),
        randomization=level, instruction_split=split, render_mode="rgb_array",
        render_size=config.render_size)
    if config.max_episode_steps is not None:
        kwargs["max_episode_steps"] = config.max_episode_steps
    return gym.make(env_id, **kwargs)


# In a pool worker: checkpoint folder (as the caller named it) -> this worker's copy of it.
_LOCAL_CHECKPOINTS: dict[str, str] = {}


def _build_policy(factory: PolicyFactory, env: gym.Env, config: EvalConfig) -> Any:
    if isinstance(factory, PolicySpec):
        if factory.kind == "checkpoint" and factory.target in _LOCAL_CHECKPOINTS:
            factory = dataclasses.replace(factory, target=_LOCAL_CHECKPOINTS[factory.target])
        policy = factory.build(env, expert_factory=config.expert_factory)
    else:
        policy = factory(env)
    if config.action_steps is not None:
        if not hasattr(policy, "set_action_steps"):
            raise ValueError(f"action_steps={config.action_steps} needs a policy that plans "
                             f"action chunks; {type(policy).__name__} does not")
        policy.set_action_steps(config.action_steps)
    return policy


def _try_expert(config: EvalConfig, env: gym.Env) -> Any:
    """The scripted expert for ``env``'s task, or None when the task has none."""
    try:
        return import_object(config.expert_factory)(env)
    except (ImportError, AttributeError, KeyError, NotImplementedError, ValueError):
        return None


def _alignment(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(cosine similarity, fraction of dimensions whose signs agree) of two actions."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = float(a @ b / (na * nb)) if na > 1e-9 and nb > 1e-9 else 0.0
    return cos, float(np.mean(np.sign(a) == np.sign(b)))


def run_episode(env: gym.Env, policy: Any, seed: int, *, expert: Any = None,
                record: bool = False, max_steps: int = 10_000,
                options: Optional[dict[str, Any]] = None, deterministic: bool = True
                ) -> tuple[dict[str, Any], list[np.ndarray], np.ndarray]:
    """Roll out one episode from ``reset(seed=seed, options=options)``; the policy acts with
    ``act(obs, deterministic=deterministic)`` (False: sampled, seeded by ``reset_policy``).

    Returns (record fields, rendered frames or [] when not recording, first policy image).
    When the env reports ``info["original_task"]`` (a swapped instruction), the fields carry
    ``original_success``: whether the original task's predicate held at the last step.
    """
    reset_policy(policy, seed)
    obs, info = env.reset(seed=seed, options=options)
    first_image = np.asarray(obs["image"]) if isinstance(obs, dict) and "image" in obs else None
    fields: dict[str, Any] = {
        "first_frame_hash": first_frame_hash(obs),
        "randomization_hash": randomization_hash(info.get("randomization", {})),
        "instruction": str(info.get("instruction", obs.get("instruction", ""))),
        "task": info.get("task"),
    }
    frames = [np.asarray(env.render())] if record else []
    ep_return, length, tts = 0.0, 0, None
    cos_sum, sign_sum = 0.0, 0.0
    for _ in range(max_steps):
        action = np.asarray(policy.act(obs, deterministic=deterministic), dtype=np.float32)
        if expert is not None:
            c, s = _alignment(action, expert.act(obs, deterministic=True))
            cos_sum, sign_sum = cos_sum + c, sign_sum + s
        obs, reward, terminated, truncated, info = env.step(action)
        ep_return += float(reward)
        length += 1
        if tts is None and info.get("is_success", False):
            tts = length
        if record:
            frames.append(np.asarray(env.render()))
        if terminated or truncated:
            break
    if "original_task" in info:
        fields["original_success"] = bool(info["original_task"]["is_success"])
    fields.update(
        success=tts is not None, length=length, episode_return=ep_return, time_to_success=tts,
        alignment_cos=cos_sum / length if expert is not None and length else None,
        alignment_sign=sign_sum / length if expert is not None and length else None)
    return fields, frames, first_image


# ----------------------------------------------------------------------------- workers

@dataclasses.dataclass
class _Job:
    factory: PolicyFactory
    config: EvalConfig
    env_id: str
    split: str
    level: str
    indices: list[int]
    record: bool  # render and write a video for every episode in this job
    probe: bool = True  # run config.probe's episodes too (False for video re-runs)


# Per-process cache: cell -> (env, policy, has_expert). Lives for one evaluate() call in the
# main process and for the life of a worker process.
_CACHE: dict[tuple, tuple[gym.Env, Any, bool]] = {}


def _cell_env(factory: PolicyFactory, config: EvalConfig, cell: tuple[str, str, str]):
    key = (cell, id(factory) if not isinstance(factory, PolicySpec) else factory, config.image_size,
           config.robot, config.max_episode_steps, config.render_size, tuple(config.cameras))
    if key not in _CACHE:
        env = make_eval_env(config, *cell)
        policy = _build_policy(factory, env, config)
        check_policy_spaces(policy, env, where=cell[0])
        has_expert = config.alignment and _try_expert(config, env) is not None
        _CACHE[key] = (env, policy, has_expert)
    return _CACHE[key]


def close_cached_envs() -> None:
    while _CACHE:
        env, _, _ = _CACHE.popitem()[1]
        env.close()
    _LOCAL_CHECKPOINTS.clear()


def video_name(env_id: str, split: str, level: str, index: int) -> str:
    slug = env_id.split("/")[-1].split(":")[-1]
    return f"{slug}_{split}_{level}_ep{index:03d}.mp4"


def _run_job(job: _Job) -> list[tuple[EpisodeRecord, Optional[bytes]]]:
    """Run the episodes of one job; returns records and, for index 0 or a recorded episode,
    one PNG frame for the report."""
    from vla_sim.evaluation.video import png_bytes, write_episode_video

    config = job.config
    env, policy, has_expert = _cell_env(job.factory, config, (job.env_id, job.split, job.level))
    rebuild = isinstance(job.factory, PolicySpec) and job.factory.kind == "expert"
    out = []
    for index in job.indices:
        t0 = time.perf_counter()
        seed = episode_seed(config.base_seed, index)
        expert = _try_expert(config, env) if has_expert else None
        ep_policy = _build_policy(job.factory, env, config) if rebuild else policy
        fields, frames, first_image = run_episode(env, ep_policy, seed, expert=expert,
                                                  record=job.record,
                                                  deterministic=not config.sample_actions)
        video = None
        preview = None
        if job.record and config.video_dir is not None:
            video = video_name(job.env_id, job.split, job.level, index)
            write_episode_video(frames, Path(config.video_dir) / video, fields["instruction"],
                                fields["success"], fps=config.fps)
            preview = png_bytes(frames[len(frames) // 2])
        elif index == 0 and first_image is not None:
            preview = png_bytes(first_image)
        if config.probe is not None and job.probe:
            probe_policy = _build_policy(job.factory, env, config) if rebuild else policy
            fields.update(_probe_fields(env, probe_policy, seed, fields, (job.env_id, index),
                                        deterministic=not config.sample_actions))
        fields.pop("original_success", None)
        out.append((EpisodeRecord(env_id=job.env_id, split=job.split, level=job.level,
                                  index=index, seed=seed, video=video,
                                  wall_s=time.perf_counter() - t0, **fields), preview))
    return out


def _probe_fields(env: gym.Env, policy: Any, seed: int, plain: dict[str, Any],
                  where: tuple[str, int], deterministic: bool = True) -> dict[str, Any]:
    """Run the swap probe's episode of ``seed`` and check it showed the same scene as ``plain``
    (the unswapped episode's fields)."""
    fields, _, _ = run_episode(env, policy, seed, options=SWAP_OPTIONS,
                               deterministic=deterministic)
    if "original_success" not in fields:
        raise ValueError(f"{where[0]} does not support the swap probe: its reset ignores the "
                         f"{list(SWAP_OPTIONS)} option (no info['original_task'])")
    if fields["first_frame_hash"] != plain["first_frame_hash"]:
        raise RuntimeError(f"{where[0]} episode {where[1]} (seed {seed}): the swapped reset shows "
                           "a different scene; the probe must change only the instruction")
    return {"probe_instruction": fields["instruction"], "probe_obeyed": fields["success"],
            "probe_did_original": fields["original_success"], "probe_length": fields["length"]}


def _chunks(indices: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(indices), size):
        yield indices[i:i + size]


def _init_worker(factory: PolicyFactory, config: EvalConfig,
                 checkpoint: Optional[ShippedFolder] = None) -> None:
    """A pool worker's initializer: the policy check, which also builds (and caches) the env and
    policy of every env's first cell. A mismatch is raised by the worker's first job, so the
    evaluation fails before any episode, as in-process. ``checkpoint``: the policy's folder as
    shipped to this worker (a Ray worker may be on another machine)."""
    if checkpoint is not None:
        _LOCAL_CHECKPOINTS[checkpoint.source] = checkpoint.path()
    _check_policy(factory, config)


def _run_job_in_worker(job: _Job) -> list[tuple[EpisodeRecord, Optional[bytes], Optional[bytes]]]:
    """:func:`_run_job` in a pool worker, which may be on another machine: recorded videos
    come back as mp4 bytes, for the caller to write into ``video_dir``."""
    if not job.record or job.config.video_dir is None:
        return [(record, preview, None) for record, preview in _run_job(job)]
    with tempfile.TemporaryDirectory(prefix="vla_sim_eval_") as tmp:
        local = dataclasses.replace(job, config=dataclasses.replace(job.config, video_dir=tmp))
        return [(record, preview, (Path(tmp) / record.video).read_bytes() if record.video else None)
                for record, preview in _run_job(local)]


def _check_policy(factory: PolicyFactory, config: EvalConfig) -> None:
    """Refuse a mismatched policy before any episode (one env per env id is enough): declared
    spaces are compared, and one action on episode 0's first observation is checked."""
    for env_id in config.env_ids:
        env, policy, _ = _cell_env(factory, config,
                                   (env_id, config.splits[0], config.randomization[0]))
        probe_obs, _ = env.reset(seed=episode_seed(config.base_seed, 0))
        check_policy_spaces(policy, env, where=env_id, obs=probe_obs)
        if config.probe == "swap":
            _, info = env.reset(seed=episode_seed(config.base_seed, 0), options=SWAP_OPTIONS)
            if "original_task" not in info:
                raise ValueError(f"{env_id} does not support the swap probe: its reset ignores "
                                 f"the {list(SWAP_OPTIONS)} option (no info['original_task'])")


def _dispatch(jobs: list[_Job], pool: Optional[WorkerPool],
              on_record: Callable[[EpisodeRecord], None]
              ) -> list[tuple[EpisodeRecord, Optional[bytes]]]:
    """Run ``jobs`` in ``pool`` (None: in this process, one episode at a time)."""
    results: list[tuple[EpisodeRecord, Optional[bytes]]] = []
    if pool is None:
        for job in jobs:
            for one in _chunks(job.indices, 1):  # one episode at a time: live progress
                for item in _run_job(dataclasses.replace(job, indices=one)):
                    results.append(item)
                    on_record(item[0])
        return results
    futures = {pool.submit(_run_job_in_worker, job): job for job in jobs}
    try:
        for fut in as_completed(futures):
            for record, preview, video in fut.result():
                if video is not None:
                    path = Path(futures[fut].config.video_dir) / record.video
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(video)
                results.append((record, preview))
                on_record(record)
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    return results


# ----------------------------------------------------------------------------- evaluate

def _mean(values: list[float]) -> Optional[float]:
    return float(np.mean(values)) if values else None


def _probe_summary(config: EvalConfig, eps: list[EpisodeRecord]) -> dict[str, Any]:
    """CellSummary's probe fields: counts, rates and 95% Wilson intervals."""
    if config.probe is None:
        return {}
    probed = [e for e in eps if e.probe_obeyed is not None]
    n = len(probed)
    out: dict[str, Any] = {"probe": config.probe, "probe_episodes": n}
    for name, key in (("obeyed", "probe_obeyed"), ("did_original", "probe_did_original")):
        k = sum(bool(getattr(e, key)) for e in probed)
        low, high = wilson_interval(k, n)
        out.update({name: k, f"{name}_rate": k / n if n else 0.0, f"{name}_ci_low": low,
                    f"{name}_ci_high": high})
    return out


def summarize(config: EvalConfig, episodes: list[EpisodeRecord]) -> list[CellSummary]:
    cells = []
    for cell in config.cells():
        eps = [e for e in episodes if e.cell == cell]
        k, n = sum(e.success for e in eps), len(eps)
        low, high = wilson_interval(k, n)
        cells.append(CellSummary(
            env_id=cell[0], split=cell[1], level=cell[2],
            task=eps[0].task if eps else None, episodes=n, successes=k,
            success_rate=k / n if n else 0.0, ci_low=low, ci_high=high,
            mean_length=_mean([e.length for e in eps]) or 0.0,
            mean_return=_mean([e.episode_return for e in eps]) or 0.0,
            mean_time_to_success=_mean([e.time_to_success for e in eps if e.success]),
            alignment_cos=_mean([e.alignment_cos for e in eps if e.alignment_cos is not None]),
            alignment_sign=_mean([e.alignment_sign for e in eps if e.alignment_sign is not None]),
            **_probe_summary(config, eps)))
    return cells


def describe_policy(factory: PolicyFactory) -> dict[str, Any]:
    if isinstance(factory, PolicySpec):
        return factory.to_dict()
    name = getattr(factory, "__qualname__", type(factory).__qualname__)
    return {"kind": "callable", "target": f"{getattr(factory, '__module__', '?')}:{name}"}


def evaluate(policy_factory: PolicyFactory, config: EvalConfig,
             progress: Optional[Callable[[EpisodeRecord], None]] = None) -> EvalResult:
    """Evaluate a policy on every cell of ``config``; ``progress`` is called per finished episode.

    A policy whose declared observation/action space does not fit an env is refused with a
    ValueError before any episode runs.
    """
    t_start = time.perf_counter()
    in_process = config.workers == 1 and config.backend == "process"
    if not in_process and not isinstance(policy_factory, PolicySpec):
        import pickle

        try:
            pickle.dumps(policy_factory)
        except Exception as exc:
            raise ValueError(f"workers={config.workers} (backend {config.backend}) needs a "
                             f"picklable policy factory (a PolicySpec or a module-level "
                             f"function): {exc}") from None
    # Workers check the policy in their initializer; in this process, check it here.
    pool = None
    if not in_process:
        shipped = None
        if isinstance(policy_factory, PolicySpec) and policy_factory.kind == "checkpoint":
            shipped = ship_folder(policy_factory.target, config.backend, config.ray_address,
                                  suffixes=CHECKPOINT_SUFFIXES)
        pool = WorkerPool(config.workers, _init_worker, (policy_factory, config, shipped),
                          backend=config.backend, ray_address=config.ray_address)
    try:
        if in_process:
            _check_policy(policy_factory, config)
        return _evaluate(policy_factory, config, pool, progress, t_start)
    finally:
        close_cached_envs()
        if pool is not None:
            pool.shutdown()


def _evaluate(policy_factory: PolicyFactory, config: EvalConfig, pool: Optional[WorkerPool],
              progress: Optional[Callable[[EpisodeRecord], None]], t_start: float) -> EvalResult:
    # "all": every episode; "first": episodes 0..k-1; "failures": the first k failures, re-run
    # with rendering after the main pass (episodes are seed-determined).
    k = config.videos if config.videos is not None else config.episodes
    want_videos = config.video_dir is not None and (
        config.record == "all" or (config.record in ("first", "failures") and k > 0))
    indices = list(range(config.episodes))
    recorded = set()
    if want_videos and config.record == "all":
        recorded = set(indices)
    elif want_videos and config.record == "first":
        recorded = set(indices[:k])
    jobs: list[_Job] = []
    # Small jobs (workers keep their envs and policy between jobs, so a job costs little): the
    # pool stays balanced to the end (the last job leaves the other workers idle for at most
    # two episodes), and progress is live.
    per_job = max(1, min(2, math.ceil(config.episodes / (4 * config.workers))))
    for cell in config.cells():
        for rec in (True, False):
            part = [i for i in indices if (i in recorded) == rec]
            for chunk in _chunks(part, per_job):
                jobs.append(_Job(policy_factory, config, *cell, chunk, rec))
    on_record = progress or (lambda r: None)
    items = _dispatch(jobs, pool, on_record)
    if want_videos and config.record == "failures":
        items = _record_failures(policy_factory, config, items, k, pool)
    items.sort(key=lambda it: (config.cells().index(it[0].cell), it[0].index))
    episodes = [it[0] for it in items]
    preview = next((p for r, p in items if p is not None and r.video), None) or \
        next((p for _, p in items if p is not None), None)
    cells = summarize(config, episodes)
    if want_videos:
        from vla_sim.evaluation.video import write_cell_grids

        write_cell_grids(config, episodes, cells)
    wall = time.perf_counter() - t_start
    timing = {"wall_s": wall, "episodes_per_s": len(episodes) / wall if wall > 0 else None,
              "workers": config.workers, "backend": config.backend,
              "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return EvalResult(config=config, policy=describe_policy(policy_factory), episodes=episodes,
                      cells=cells, fingerprint=fingerprint(), timing=timing, preview_png=preview)


def _record_failures(factory: PolicyFactory, config: EvalConfig,
                     items: list[tuple[EpisodeRecord, Optional[bytes]]], k: int,
                     pool: Optional[WorkerPool] = None
                     ) -> list[tuple[EpisodeRecord, Optional[bytes]]]:
    """Re-run the first ``k`` failed episodes of each cell by seed with rendering on.

    Episodes are seed-determined, so the re-run shows the same episode; a re-run whose scene
    hash or outcome differs is reported, not silently kept.
    """
    by_key = {(r.cell, r.index): (r, p) for r, p in items}
    jobs = []
    for cell in config.cells():
        failed = sorted(r.index for r, _ in items if r.cell == cell and not r.success)[:k]
        if failed:
            jobs.append(_Job(factory, config, *cell, failed, True, probe=False))
    if not jobs:
        return items
    for rerun, preview in _dispatch(jobs, pool, lambda r: None):
        original, old_preview = by_key[(rerun.cell, rerun.index)]
        if (rerun.first_frame_hash, rerun.success, rerun.length) != \
                (original.first_frame_hash, original.success, original.length):
            raise RuntimeError(
                f"re-running failed episode {rerun.index} of {rerun.cell} (seed {rerun.seed}) for "
                f"its video gave a different episode: the env or policy is not seed-determined")
        by_key[(rerun.cell, rerun.index)] = (dataclasses.replace(original, video=rerun.video),
                                             preview or old_preview)
    return list(by_key.values())
