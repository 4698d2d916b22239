"""Collect scripted-expert demonstrations into a LeRobotDataset, in parallel and resumably.

Attempt ``i`` uses env seed ``episode_seed(base_seed, i)``, so it is the same episode whatever the
number of workers. Workers (spawned processes, or Ray actors with ``backend="ray"``: see
vla_sim.utils.workers) build their env once, then roll out and encode attempts; the main process
commits results strictly in attempt order and stops at the N-th kept success, so the dataset is
identical for any backend and worker count, and an interrupted run resumes at the first
uncommitted attempt.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_sim.data import format as fmt
from vla_sim.data.writer import EncodedEpisode, Episode, LeRobotDatasetWriter, encode_episode
from vla_sim.envs.registration import ENV_IDS, resolve_env_id
from vla_sim.utils.fingerprint import fingerprint
from vla_sim.utils.io import atomic_write_json
from vla_sim.utils.seeding import TRAIN_BASE_SEED, episode_seed
from vla_sim.utils.workers import WorkerPool, check_backend

DEFAULT_EXPERT = "vla_sim.agents.experts:make_expert"
# Behaviour changes of the default expert under the same factory name, per task: a dataset
# recorded before one must not be extended or relabelled by the new expert (their labels
# disagree), so the revision is part of the collection identity (absent where no task changed).
EXPERT_REVISIONS: dict[str, str] = {"reach": "reach-cone"}  # Reach: cone descent, not a gate


@dataclass
class CollectConfig:
    """Settings of one collection run. Fields in ``IDENTITY_FIELDS`` must match to resume."""

    out: str = ""                      # dataset folder
    env: str = "Reach"                 # "Reach" / "pick_place" / "vla_sim/PickPlace-v0" / "module:Id"
    robot: str = "panda"
    episodes: int = 10                 # successful demonstrations wanted
    randomization: str = "low"         # none | low | medium | high
    instruction_split: str = "train"   # train | heldout
    seed: int = TRAIN_BASE_SEED        # base seed; attempt i uses episode_seed(seed, i)
    workers: int = 1                   # parallel workers (1 with backend process: this process)
    backend: str = "process"           # process | ray (Ray actors; pip install 'vla-sim[ray]')
    ray_address: str = ""              # Ray cluster to join (host:port, auto); empty: a local Ray
    keep_failures: bool = False        # also store failed attempts (success=False)
    noise: float = 0.0                 # std of Gaussian noise added to expert actions (action units)
    max_attempts: int | None = None    # cap on attempt indices; default 3 * episodes + 20
    image_size: int = 64
    cameras: tuple[str, ...] = ("front",)
    expert: str = DEFAULT_EXPERT       # "module:factory", factory(env) -> policy with act(obs)
    same_color_distractor: float = 0.0  # env option: P(a distractor shares the target's colour)
    progress: bool = True

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        check_backend(self.backend, self.ray_address)
        if not 0 <= self.noise < float("inf"):
            raise ValueError(f"noise must be a finite number >= 0, got {self.noise}")
        if not 0.0 <= self.same_color_distractor <= 1.0:
            raise ValueError(f"same_color_distractor must be in [0, 1], got "
                             f"{self.same_color_distractor}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 (or null), got {self.max_attempts}")

    @property
    def env_id(self) -> str:
        return resolve_env_id(self.env)

    @property
    def attempt_cap(self) -> int:
        return self.max_attempts if self.max_attempts is not None else 3 * self.episodes + 20

    def identity(self) -> dict[str, Any]:
        """Settings that define which episodes the dataset holds (resuming requires equality)."""
        d = {k: getattr(self, k) for k in IDENTITY_FIELDS}
        d["env"] = self.env_id
        d["cameras"] = list(self.cameras)
        if self.same_color_distractor:  # absent at 0: datasets made before it keep resuming
            d["same_color_distractor"] = self.same_color_distractor
        revision = expert_revision(self.expert, self.env_id)
        if revision:
            d["expert_revision"] = revision
        return d


def expert_revision(expert: str, env_id: str) -> str:
    """The revision of the default expert's behaviour on ``env_id``'s tasks ("" for other
    experts, other envs and tasks whose expert never changed)."""
    if expert != DEFAULT_EXPERT:
        return ""
    task = ENV_IDS.get(env_id, {}).get("task")
    tasks = [t for t in EXPERT_REVISIONS if task in (t, "multitask")]
    return "+".join(EXPERT_REVISIONS[t] for t in tasks)


IDENTITY_FIELDS = ("env", "robot", "randomization", "instruction_split", "seed", "keep_failures",
                   "noise", "image_size", "cameras", "expert")


@dataclass
class CollectResult:
    out: str
    episodes: int            # episodes in the dataset
    successes: int           # successful episodes in the dataset
    attempts: int            # attempt indices consumed in total (all runs)
    attempts_this_run: int
    seconds: float
    reached_target: bool
    success_rate: float = field(init=False)

    def __post_init__(self) -> None:
        self.success_rate = self.successes / self.attempts if self.attempts else 0.0


# --------------------------------------------------------------------------------------- rollout

def make_env(cfg: CollectConfig):
    import gymnasium

    import vla_sim  # noqa: F401  (registers the env ids)

    # Passed only when set: other envs ("module:Id") need not know the option.
    extra = ({"same_color_distractor": cfg.same_color_distractor}
             if cfg.same_color_distractor else {})
    return gymnasium.make(cfg.env_id, robot=cfg.robot, randomization=cfg.randomization,
                          instruction_split=cfg.instruction_split, image_size=cfg.image_size,
                          cameras=cfg.cameras, **extra)


def make_expert(spec: str, env):
    module, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"expert must be 'module:factory', got {spec!r}")
    return getattr(importlib.import_module(module), attr)(env)


def rollout_episode(env, expert, seed: int, cameras: tuple[str, ...] = ("front",), noise: float = 0.0,
                    randomization: dict | None = None, attempt_index: int = 0,
                    task: str | None = None) -> Episode:
    """Run the expert for one episode from ``env.reset(seed)`` and record it.

    Records obs (images, state) at step t, the expert's action for it, the reward after it and
    whether the episode ended after it. With ``noise > 0`` the env executes the expert's action
    plus N(0, noise) (DART, Laskey et al. 2017): the demonstrations visit the off-course states a
    learned policy drifts into, labelled with the expert's correction. The executed actions are
    recomputed exactly by :func:`executed_actions` (the noise stream is seeded by the episode). ``randomization`` replays
    a recorded sample through ``reset(options=...)``; ``task`` names the task a multi-task env
    plays (None: the one the seed draws).
    """
    options: dict[str, Any] = {}
    if randomization is not None:
        options["randomization"] = randomization
    if task is not None:
        options["task"] = task
    obs, info = env.reset(seed=int(seed), options=options or None)
    if hasattr(expert, "reset"):
        expert.reset()
    noise_rng = np.random.default_rng([int(seed), 0x5EED])  # independent of the env's generator
    keys = [fmt.image_key(c, i) for i, c in enumerate(cameras)]
    images: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
    states, actions, rewards, dones, env_states = [], [], [], [], []
    task = goal_state_source(env)
    instruction = str(obs.get("instruction", info.get("instruction", "")))
    done, step_info = False, info
    while not done:
        for cam, key in zip(cameras, keys):
            images[cam].append(np.asarray(obs[key], dtype=np.uint8))
        states.append(np.asarray(obs["state"], dtype=np.float32))
        if task is not None:
            env_states.append(task.goal_state())
        label = np.clip(np.asarray(expert.act(obs, deterministic=True), dtype=np.float32),
                        -1.0, 1.0)
        executed = _perturb(label, noise, noise_rng)
        obs, reward, terminated, truncated, step_info = env.step(executed)
        done = bool(terminated or truncated)
        actions.append(label)
        rewards.append(float(reward))
        dones.append(done)
    meta = {"seed": int(seed), "randomization": info.get("randomization"),
            "task": info.get("task", ""), "success": bool(step_info.get("is_success", False)),
            "attempt_index": int(attempt_index), "noise": float(noise),
            "truncated": bool(truncated) and not bool(terminated)}
    instance = getattr(env.unwrapped, "instance", None)
    if instance is not None and getattr(instance, "roles", None):
        meta["roles"] = dict(instance.roles)  # which scene objects the instruction names
    return Episode(images={c: np.stack(v) for c, v in images.items()}, states=np.stack(states),
                   actions=np.stack(actions), rewards=np.asarray(rewards, np.float32),
                   dones=np.asarray(dones, bool), instruction=instruction, metadata=meta,
                   env_states=np.stack(env_states) if env_states else None)


def goal_state_source(env) -> Any:
    """The env's task when it offers ``goal_state()`` (our envs), else None (a ``module:Id``
    env records no ``observation.environment_state``)."""
    task = getattr(env.unwrapped, "task", None)
    return task if callable(getattr(task, "goal_state", None)) else None


def _perturb(label: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    if noise <= 0:
        return label
    return np.clip(label + rng.normal(0.0, noise, size=label.shape).astype(np.float32),
                   -1.0, 1.0).astype(np.float32)


def executed_actions(actions: np.ndarray, seed: int, noise: float) -> np.ndarray:
    """The actions the env executed while recording an episode whose labels are ``actions``
    (identical to them when ``noise`` is 0): replaying these reproduces the episode."""
    rng = np.random.default_rng([int(seed), 0x5EED])
    return np.stack([_perturb(np.asarray(a, np.float32), noise, rng) for a in actions])


# ------------------------------------------------------------------- worker (own process, own env)
_WORKER: dict[str, Any] = {}


def _init_worker(cfg: CollectConfig) -> None:
    """Build a worker's env and expert once (a pool worker's initializer, or this process's)."""
    env = make_env(cfg)
    _WORKER.update(cfg=cfg, env=env, expert=make_expert(cfg.expert, env))


def _run_attempt(attempt: int) -> tuple[int, bool, EncodedEpisode | None]:
    """Roll out attempt ``attempt``; encode it only if it will be kept."""
    cfg = _WORKER["cfg"]
    ep = rollout_episode(_WORKER["env"], _WORKER["expert"], episode_seed(cfg.seed, attempt),
                         cameras=cfg.cameras, noise=cfg.noise, attempt_index=attempt)
    success = bool(ep.metadata["success"])
    keep = success or cfg.keep_failures
    return attempt, success, encode_episode(ep, _fps(_WORKER["env"])) if keep else None


def _fps(env) -> int:
    return int(env.unwrapped.metadata.get("render_fps", 20))


def fit_env_states(enc: EncodedEpisode, env_state_dim: int) -> EncodedEpisode:
    """``enc`` with its goal states cut to a dataset's ``env_state_dim`` columns: a dataset
    collected before the goal state grew (6 values: the positions, the prefix of today's layout,
    vla_sim.envs.goal_state) keeps its own size when resumed."""
    states = enc.env_states
    if states is not None and 0 < env_state_dim < states.shape[1]:
        enc = dataclasses.replace(enc, env_states=np.ascontiguousarray(states[:, :env_state_dim]))
    return enc


def _env_state_dim(env) -> int:
    from vla_sim.envs.tasks.base import GOAL_STATE_DIM

    return GOAL_STATE_DIM if goal_state_source(env) is not None else 0


# --------------------------------------------------------------------------------------- driver

def collect(cfg: CollectConfig) -> CollectResult:
    """Collect until the dataset holds ``cfg.episodes`` successes (or ``attempt_cap`` attempts)."""
    if not cfg.out:
        raise ValueError("an output folder (out) is required")
    out = Path(cfg.out)
    state_path = out / fmt.COLLECT_STATE_PATH
    prev = _load_state(out)
    if prev is not None:
        _check_resume(prev["config"], cfg.identity(), out)
    # fps and whether goal states are recorded come from the env (the in-process worker's, or a
    # probe env before starting a pool); a dataset being resumed keeps its own features.
    in_process = cfg.workers == 1 and cfg.backend == "process"
    # the workers start (imports, PyBullet, env) while this process probes and opens the dataset
    pool = None if in_process else WorkerPool(cfg.workers, _init_worker, (cfg,),
                                              backend=cfg.backend,
                                              ray_address=cfg.ray_address).start()
    try:
        return _collect(cfg, out, state_path, prev, in_process, pool)
    finally:
        if pool is not None:
            pool.shutdown()


def _collect(cfg: CollectConfig, out: Path, state_path: Path, prev: dict | None,
             in_process: bool, pool: WorkerPool | None) -> CollectResult:
    if in_process:
        _init_worker(cfg)
        fps, env_state_dim = _fps(_WORKER["env"]), _env_state_dim(_WORKER["env"])
    elif prev is None:
        probe_env = make_env(cfg)
        fps, env_state_dim = _fps(probe_env), _env_state_dim(probe_env)
        probe_env.close()
    if (out / fmt.INFO_PATH).exists():
        info = json.loads((out / fmt.INFO_PATH).read_text())
        fps = int(info["fps"])
        env_state_dim = int((info["features"].get(fmt.ENV_STATE_KEY) or {"shape": [0]})["shape"][0])
    try:
        writer = LeRobotDatasetWriter(
            out, fps=fps, robot_type=cfg.robot, cameras=cfg.cameras, state_dim=22, action_dim=4,
            image_size=cfg.image_size, env_state_dim=env_state_dim,
            extra_info={"fingerprint": fingerprint(), "collect": cfg.identity()})
    except BaseException:
        if "env" in _WORKER:
            _WORKER.pop("env").close()
        raise
    next_attempt = max([prev["next_attempt"] if prev else 0]
                       + [int(e["vla_sim/attempt_index"]) + 1 for e in writer.episodes])
    successes = sum(bool(e["vla_sim/success"]) for e in writer.episodes)
    state = {"config": cfg.identity(), "next_attempt": next_attempt}
    atomic_write_json(state_path, state)

    start_attempt, t0 = next_attempt, time.perf_counter()
    bar = _progress(cfg, successes)

    def commit(attempt: int, success: bool, enc: EncodedEpisode | None) -> None:
        nonlocal successes, next_attempt
        if enc is not None:
            writer.add_encoded(fit_env_states(enc, writer.env_state_dim))
        successes += success
        next_attempt = attempt + 1
        state["next_attempt"] = next_attempt
        atomic_write_json(state_path, state)
        if bar is not None:
            bar.update(int(success))
            bar.set_postfix(expert_success=f"{successes}/{next_attempt}")

    try:
        if in_process:
            while successes < cfg.episodes and next_attempt < cfg.attempt_cap:
                commit(*_run_attempt(next_attempt))
        else:
            _collect_parallel(cfg, pool, lambda: (successes, next_attempt), commit)
    finally:
        if bar is not None:
            bar.close()
        if "env" in _WORKER:
            _WORKER.pop("env").close()
    return CollectResult(out=str(out), episodes=writer.num_episodes, successes=successes,
                         attempts=next_attempt, attempts_this_run=next_attempt - start_attempt,
                         seconds=time.perf_counter() - t0, reached_target=successes >= cfg.episodes)


def _collect_parallel(cfg: CollectConfig, pool: WorkerPool, progress, commit) -> None:
    """Run attempts in ``pool`` (processes or Ray actors, each building its env once);
    commit finished ones in attempt order."""
    done: dict[int, tuple[int, bool, EncodedEpisode | None]] = {}
    pending: dict[Future, int] = {}
    successes, submit_next = progress()
    try:
        while True:
            successes, committed = progress()
            if successes >= cfg.episodes or committed >= cfg.attempt_cap:
                break
            # keep every worker busy, a little ahead of the commit point, but near the end
            # no more attempts in flight than successes still wanted (finished ones count):
            # an attempt past the N-th success is wasted, and a pool waits for it
            wanted = cfg.episodes - successes - sum(r[1] for r in done.values())
            limit = min(2 * cfg.workers, max(1, wanted))
            while len(pending) < limit and submit_next < cfg.attempt_cap:
                pending[pool.submit(_run_attempt, submit_next)] = submit_next
                submit_next += 1
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                pending.pop(fut)
                result = fut.result()
                done[result[0]] = result
            while True:
                successes, committed = progress()
                if committed not in done or successes >= cfg.episodes:
                    break
                commit(*done.pop(committed))
    finally:
        for fut in pending:
            fut.cancel()


def _progress(cfg: CollectConfig, initial: int):
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.episodes, initial=min(initial, cfg.episodes), unit="ep",
                desc=f"collect {cfg.env_id}", dynamic_ncols=True)


def _load_state(out: Path) -> dict | None:
    path = out / fmt.COLLECT_STATE_PATH
    if not path.exists():
        if (out / fmt.INFO_PATH).exists():
            raise ValueError(f"{out}: holds a dataset that was not made by `vla-sim collect` "
                             f"({path} missing); choose another --out")
        return None
    return json.loads(path.read_text())


def _check_resume(old: dict, new: dict, out: Path) -> None:
    diffs = [f"{k}: dataset has {old.get(k)!r}, command gives {new[k]!r}"
             for k in new if old.get(k) != new[k]]
    if diffs:
        raise ValueError(f"{out} was collected with different settings; refusing to resume "
                         f"(use another --out or the same arguments): " + "; ".join(diffs))


__all__ = [
    "CollectConfig",
    "CollectResult",
    "collect",
    "fingerprint",
    "fit_env_states",
    "make_env",
    "make_expert",
    "resolve_env_id",
    "rollout_episode",
]
