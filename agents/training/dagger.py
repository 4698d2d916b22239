"""DAgger (Ross, Gordon & Bagnell 2011) with the scripted experts.

Behaviour cloning only sees the states the expert visits; a learned policy drifts off them and
has no labels there (compounding errors). DAgger lets the learner drive, asks the expert what it
would have done at every visited state and trains on the aggregate. The scripted experts are
stateless and read ``env.unwrapped.privileged_state()``, so they can label any state.

The algorithm, as run here::

    policy_0 = BC on the demonstrations (or ``init_policy``)
    for round i = 0 .. rounds-1:
        beta_i = beta0 * beta_decay**i
        roll out episodes_per_round episodes; at every step the expert's action on the current
            state is recorded as the label, and the env executes the expert's action with
            probability beta_i, else the learner's (policy_i, deterministic)
        append the rollouts to the aggregated dataset (each episode marked relabelled)
        policy_{i+1} = BC on demonstrations + all rollouts so far (warm-started from policy_i)

Mixing is per step by default (``mixing="step"``: Ross et al.'s pi_i = beta pi* + (1-beta)
pi_hat, drawn afresh each step); ``mixing="episode"`` hands whole episodes to one of the two.

Layout of the run folder ``out``::

    dagger_config.json, dagger_state.json   config; completed rounds and per-round records
    scene_frames.npz                        with ``scene_frames``: the labelled frames without
                                            actions every BC run also trains perception on
    data/                                   copy of the demonstrations + every rollout appended
    policy_0/ .. policy_K/                  one train_bc run per round (last/, best/, tb/)
    last/                                   copy of the newest policy_K/last

The demonstrations folder itself is never written. Resume: every rollout episode is committed
atomically in index order and records its round and index, every BC run is resumable, and the
state file records completed rounds, so ``resume=True`` continues at the first unfinished piece
(rollout, BC step or round) and ``rounds`` may be raised to run more rounds.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import gymnasium as gym
import numpy as np

from vla_sim.agents.policies.checkpoint import copy_checkpoint, load_state_strict
from vla_sim.agents.training.bc import RESUMABLE_CHANGES, BCConfig, BCResult, train_bc
from vla_sim.agents.training.common import config_changes, config_defaults
from vla_sim.agents.training.configs import MIXING, DAggerConfig
from vla_sim.config import config_to_dict
from vla_sim.data import format as fmt
from vla_sim.data.collect import (
    CollectConfig,
    fit_env_states,
    make_env,
    make_expert,
    rollout_episode,
)
from vla_sim.data.demos import DemoArrays
from vla_sim.data.writer import EncodedEpisode, LeRobotDatasetWriter, encode_episode
from vla_sim.envs.registration import ENV_IDS, EPISODE_STEPS, resolve_env_id
from vla_sim.evaluation.evaluator import CHECKPOINT_SUFFIXES
from vla_sim.evaluation.policies import reset_policy
from vla_sim.utils.io import atomic_write_json
from vla_sim.utils.seeding import DAGGER_BASE_SEED, episode_seed
from vla_sim.utils.workers import ShippedFolder, WorkerPool, ship_folder

log = logging.getLogger(__name__)

CONFIG_FILE, STATE_FILE = "dagger_config.json", "dagger_state.json"
# DAgger options removed after they measured worse, with the value that means "not used" and
# why: a run that used one cannot be resumed as it was started.
RETIRED_FIELDS = {"sample_learner": (False, "the learner sampling in the rollouts (Push: "
                                            "36% / 23% against 44% / 47% acting with its mode)")}
SCENE_FRAMES_FILE = "scene_frames.npz"
# Keys that may change when resuming (they change speed, logging or how far to go, not the maths).
DAGGER_RESUMABLE = ("rounds", "workers", "backend", "ray_address")
_MIX_STREAM = 0xDA66E5  # second seed word of the mixing generator (independent of the env's)
_TASK_STREAM = 0x7A5C  # third seed word of a round's task plan


@dataclass
class DAggerResult:
    out_dir: Path
    rounds_completed: int
    history: list[dict[str, Any]]
    """One record per completed round: round, beta, episodes, rollout_success, task_success and
    task_counts (per task), learner_step_fraction, frames_added, dataset_frames, bc_steps,
    val_loss, rollout_s, train_s, seconds."""
    initial: dict[str, Any] | None
    """The initial BC run's record (None with ``init_policy``)."""
    policy_dir: Path
    """The newest policy checkpoint (``out/last``)."""


# ------------------------------------------------------------------------------------- rollout
class MixedControl(gym.Wrapper):
    """Executes the action it is given (the expert's, from :func:`rollout_episode`) with
    probability ``beta``, else the learner's on the current observation, and remembers what
    ran. Wrapping the env lets collection's recorder store the expert's label at every state
    the mixture visits, in exactly the format ``collect`` writes. The learner acts with its
    mode (sampling it in the rollouts measured worse on Push: README)."""

    def __init__(self, env: gym.Env, learner: Any, beta: float, mixing: str = "step"):
        super().__init__(env)
        if mixing not in MIXING:
            raise ValueError(f"mixing must be one of {MIXING}, got {mixing!r}")
        self.learner, self.beta, self.mixing = learner, float(beta), mixing
        self.executed: list[np.ndarray] = []
        self.expert_steps = 0
        self._obs: Any = None
        self._rng = np.random.default_rng(0)
        self._expert_episode = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        # Seeded by the episode, so who acts is the same for any worker count or order.
        self._rng = np.random.default_rng([0 if seed is None else int(seed), _MIX_STREAM])
        self._expert_episode = bool(self._rng.random() < self.beta)
        self._obs, self.executed, self.expert_steps = obs, [], 0
        if self._learner_needed():  # a fresh plan (action chunks), seeded by the episode
            words = [0 if seed is None else int(seed), _MIX_STREAM, 1]
            reset_policy(self.learner, int(np.random.SeedSequence(words).generate_state(1)[0]))
        return obs, info

    def _learner_needed(self) -> bool:
        # Queried every step it might act, so a stateful policy (action-chunk queue) stays whole.
        return self.beta < 1.0 if self.mixing == "step" else not self._expert_episode

    def step(self, action):
        expert = (bool(self._rng.random() < self.beta) if self.mixing == "step"
                  else self._expert_episode)
        learner_action = (np.asarray(self.learner.act(self._obs, deterministic=True),
                                     np.float32) if self._learner_needed() else None)
        executed = np.asarray(action, np.float32) if expert else learner_action
        executed = np.clip(executed, -1.0, 1.0).astype(np.float32)
        self.executed.append(executed)
        self.expert_steps += int(expert)
        obs, reward, terminated, truncated, info = self.env.step(executed)
        self._obs = obs
        return obs, reward, terminated, truncated, info


def dagger_rollout(env: gym.Env, expert: Any, learner: Any, seed: int, beta: float,
                   cameras: tuple[str, ...] = ("front",), mixing: str = "step",
                   round_index: int = 0, index: int = 0, attempt_index: int = 0,
                   task: str | None = None):
    """One episode from ``env.reset(seed)`` under the beta-mixture, recorded like ``collect``
    records (obs, the expert's action as the label, reward, done, goal state, roles) plus
    metadata marking it relabelled: ``relabelled``, ``dagger_round``, ``dagger_index``,
    ``beta``, ``mixing``, ``expert_steps`` and ``executed_actions`` (what ran; replaying them
    from ``seed`` under the recorded task reproduces the episode). ``task``: the task a
    multi-task env plays (None: the one the seed draws)."""
    mixed = MixedControl(env, learner, beta, mixing)
    ep = rollout_episode(mixed, expert, seed, cameras=cameras, attempt_index=attempt_index,
                         task=task)
    ep.metadata.update(relabelled=True, dagger_round=int(round_index), dagger_index=int(index),
                       beta=float(beta), mixing=mixing, expert_steps=int(mixed.expert_steps),
                       executed_actions=[[float(x) for x in a] for a in mixed.executed])
    return ep


@dataclass
class _RolloutJob:
    """Everything a rollout needs (picklable: sent to the workers with every rollout)."""

    settings: CollectConfig
    policy_dir: str
    beta: float
    mixing: str
    round_index: int
    seed: int
    episodes_per_round: int
    policy: ShippedFolder | None = None
    """``policy_dir`` as the workers see it (None: read ``policy_dir``); a Ray worker may be
    on another machine."""
    tasks: tuple[str, ...] | None = None
    """Rollout i plays ``tasks[i]`` (None: the task its seed draws); see :func:`task_plan`."""

    def attempt(self, index: int) -> int:
        return self.round_index * self.episodes_per_round + index

    def task(self, index: int) -> str | None:
        return None if self.tasks is None else self.tasks[index]


# One worker's state: its env and expert for the whole run (the rollout settings are the same
# every round), and the learner of the round it last rolled out.
_WORKER: dict[str, Any] = {}


def _init_worker(settings: CollectConfig) -> None:
    env = make_env(settings)
    _WORKER.update(env=env, expert=make_expert(settings.expert, env), learner_key=None,
                   learner=None)


def _learner(job: _RolloutJob) -> Any:
    """The round's learner, loaded once per worker per round."""
    folder = job.policy or ShippedFolder(job.policy_dir)
    weights = Path(job.policy_dir) / "model.safetensors"
    key = (job.policy_dir, folder.digest or (weights.stat().st_mtime_ns if weights.exists()
                                             else None))
    if _WORKER.get("learner_key") != key:
        from vla_sim.agents.policies import load_policy

        _WORKER.update(learner=load_policy(folder.path()), learner_key=key)
    return _WORKER["learner"]


def _run_rollout(job: _RolloutJob, index: int) -> tuple[int, EncodedEpisode]:
    env = _WORKER["env"]
    attempt = job.attempt(index)
    ep = dagger_rollout(env, _WORKER["expert"], _learner(job),
                        episode_seed(job.seed, attempt), job.beta, job.settings.cameras,
                        job.mixing, job.round_index, index, attempt, job.task(index))
    return index, encode_episode(ep, int(env.unwrapped.metadata.get("render_fps", 20)))


def _close_worker() -> None:
    if "env" in _WORKER:
        _WORKER.pop("env").close()
    _WORKER.clear()


def _start_pool(settings: CollectConfig, workers: int, backend: str = "process",
                ray_address: str = "") -> WorkerPool:
    """Rollout workers for a whole DAgger run: each builds its env and expert once and loads
    each round's learner on its first rollout of the round."""
    return WorkerPool(workers, _init_worker, (settings,), backend=backend,
                      ray_address=ray_address)


def _run_rollouts(job: _RolloutJob, indices: list[int], workers: int,
                  commit: Callable[[int, EncodedEpisode], None],
                  pool: WorkerPool | None = None) -> None:
    """Roll out ``indices`` in ``pool`` (None: a process pool of ``workers`` for this call, or
    this process when ``workers == 1``); commit in index order, so the dataset is the same for
    any backend and worker count and a crash loses no committed episode."""
    if not indices:
        return
    if pool is None and workers == 1:
        _init_worker(job.settings)
        try:
            for i in indices:
                commit(*_run_rollout(job, i))
        finally:
            _close_worker()
        return
    own = pool is None
    if own:
        pool = _start_pool(job.settings, min(workers, len(indices)))
    try:
        for result in pool.map(functools.partial(_run_rollout, job), indices):  # index order
            commit(*result)
    finally:
        if own:
            pool.shutdown()


# ------------------------------------------------------------------------------ per-task records
def _outcomes(rows: Iterable[dict[str, Any]]) -> dict[str, list[bool]]:
    outcomes: dict[str, list[bool]] = {}
    for row in rows:
        outcomes.setdefault(str(row.get("vla_sim/task") or ""), []).append(
            bool(row.get("vla_sim/success")))
    return dict(sorted(outcomes.items()))


def task_success(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Rollout success per task over episodes-parquet rows (task -> fraction)."""
    return {t: sum(v) / len(v) for t, v in _outcomes(rows).items()}


def task_counts(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Rollouts per task over episodes-parquet rows (the keys of :func:`task_success`)."""
    return {t: len(v) for t, v in _outcomes(rows).items()}


# ------------------------------------------------------------------------- task-weighted rounds
def env_tasks(env: str) -> tuple[str, ...]:
    """The tasks an env of ours plays (``MultiTask``: all of them)."""
    task = ENV_IDS[resolve_env_id(env)]["task"]
    return tuple(EPISODE_STEPS) if task == "multitask" else (task,)


def rollout_weights(cfg: DAggerConfig, env: str) -> dict[str, float] | None:
    """Each task's share of a round (normalised), from ``cfg.task_weights`` over the tasks of
    ``env`` (a task not named keeps weight 1); None when no weights are set. Raises
    ValueError naming the problem: weights for a single-task env, or all weights 0."""
    if not cfg.task_weights:
        return None
    tasks = env_tasks(env) if resolve_env_id(env) in ENV_IDS else ()
    if len(tasks) < 2:
        raise ValueError(f"task_weights needs a multi-task env (MultiTask); {env!r} plays "
                         f"{list(tasks) or 'tasks unknown here'}")
    raw = {t: cfg.task_weights.get(t, 1.0) for t in tasks}
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"task_weights leave no task to roll out: {cfg.task_weights}")
    return {t: w / total for t, w in raw.items() if w > 0}


def task_plan(weights: dict[str, float], n: int, rng: np.random.Generator) -> tuple[str, ...]:
    """``n`` task names in the proportions ``weights`` (largest remainder, so the counts are
    exact, not a multinomial draw) in an order shuffled by ``rng``."""
    names = sorted(weights)
    exact = np.array([weights[t] * n for t in names])
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - int(counts.sum())]:
        counts[i] += 1
    plan = np.repeat(np.array(names, dtype=object), counts)
    return tuple(str(t) for t in rng.permutation(plan))


def round_tasks(cfg: DAggerConfig, weights: dict[str, float] | None, r: int
                ) -> tuple[str, ...] | None:
    """The tasks of round ``r``'s rollouts (None: each seed draws its own); the same plan for
    the same seed and round, so a resumed round plays what it would have played."""
    if weights is None:
        return None
    return task_plan(weights, cfg.episodes_per_round,
                     np.random.default_rng([cfg.seed, r, _TASK_STREAM]))


# ---------------------------------------------------------------------------------- the dataset
def _copy_demos(demos: Path, data_dir: Path) -> None:
    """Copy the demonstrations to ``data_dir`` (beside, then renamed into place). The decode
    cache is left behind (it is rebuilt), and so is ``collect``'s resume file: the copy is no
    longer a pure collection, so ``vla-sim collect`` must refuse to extend it."""
    from vla_sim.data.reader import DatasetReader

    DatasetReader(demos)  # validates: fail before copying a broken dataset
    tmp = data_dir.with_name(f".{data_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(demos, tmp, ignore=shutil.ignore_patterns(fmt.CACHE_DIR))
    state = tmp / fmt.COLLECT_STATE_PATH
    if state.exists():
        state.unlink()
    os.replace(tmp, data_dir)


def _open_writer(data_dir: Path) -> LeRobotDatasetWriter:
    """A writer appending to the aggregated dataset, with that dataset's own features."""
    from vla_sim.data.reader import DatasetReader

    reader = DatasetReader(data_dir, validate=False)
    feats = reader.info["features"]
    env_state = feats.get(fmt.ENV_STATE_KEY)
    return LeRobotDatasetWriter(
        data_dir, fps=reader.fps, robot_type=reader.info["robot_type"], cameras=reader.cameras,
        state_dim=int(feats[fmt.STATE_KEY]["shape"][0]),
        action_dim=int(feats[fmt.ACTION_KEY]["shape"][0]),
        image_size=tuple(reader.image_shape(reader.cameras[0])[:2]),
        env_state_dim=int(env_state["shape"][0]) if env_state else 0)


def episode_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """The free-form metadata of one episodes-parquet row (where ``relabelled`` lives)."""
    text = row.get("vla_sim/metadata")
    return json.loads(text) if text else {}


def _rollout_settings(data_dir: Path, cfg: DAggerConfig) -> CollectConfig:
    """Env settings of the rollouts: the demonstrations' (as ``collect`` recorded them), with
    ``cfg.env`` / ``cfg.randomization`` overriding; cameras, image size and robot must be the
    dataset's, or the rollouts could not be appended."""
    from vla_sim.data.reader import DatasetReader

    reader = DatasetReader(data_dir, validate=False)
    rec = reader.info.get("vla_sim", {}).get("collect", {})
    env = cfg.env or rec.get("env")
    if not env:
        raise ValueError(f"{data_dir}: the dataset does not record its env; give env "
                         "(--env) for the rollouts")
    kwargs = {k: rec[k] for k in ("instruction_split", "seed", "expert",
                                  "same_color_distractor") if k in rec}
    settings = CollectConfig(
        out=str(data_dir), env=env, robot=reader.info["robot_type"],
        randomization=cfg.randomization or rec.get("randomization", "low"),
        image_size=int(reader.image_shape(reader.cameras[0])[0]),
        cameras=tuple(reader.cameras), progress=False, **kwargs)
    revision = settings.identity().get("expert_revision")
    if revision != rec.get("expert_revision") and "expert" in rec:
        raise ValueError(f"{data_dir}: the demonstrations were recorded by an earlier version of "
                         f"the expert (revision {rec.get('expert_revision')!r}, now "
                         f"{revision!r}); its labels would contradict them: collect the "
                         "demonstrations again")
    if "seed" in rec and int(rec["seed"]) == cfg.seed:
        raise ValueError(f"seed {cfg.seed} is the demonstrations' collection seed: the rollouts "
                         "would replay the demo scenes; choose another seed")
    return settings


# --------------------------------------------------------------------------------------- driver
def _checkpoint_dir(path: Path) -> Path:
    """A checkpoint folder (model.safetensors) from itself or a training run holding last/."""
    if (path / "model.safetensors").is_file():
        return path
    if (path / "last" / "model.safetensors").is_file():
        return path / "last"
    raise FileNotFoundError(f"{path}: no checkpoint (model.safetensors, or last/ of a run)")


def _warm_start(source: Path) -> Callable[[Any], None]:
    """``init_fn`` for train_bc copying every weight and normalisation buffer of ``source``
    (the previous round's normalisation is kept: the weights were fitted to it)."""
    def init(policy: Any) -> None:
        from vla_sim.agents.policies.checkpoint import read_weights

        load_state_strict(policy, read_weights(source / "model.safetensors"), str(source))
    return init


def _round_bc_config(cfg: DAggerConfig, first: bool) -> BCConfig:
    # A deep copy per run: train_bc may fill in policy.aux_dim, which must not leak into cfg.
    bc = copy.deepcopy(cfg.bc)
    if first or not cfg.warm_start:
        return bc
    return replace(bc, steps=cfg.round_steps, warmup_steps=min(bc.warmup_steps, cfg.round_steps))


def round_data(data_dir: Path, held: DemoArrays | None = None) -> DemoArrays:
    """The aggregated dataset as arrays: the first time from the dataset (its frame cache built
    or verified), after that ``held`` grown by the episodes appended since, reading, checking and
    decoding only their files (rebuilding and re-reading the whole cache cost a round ~15 s at
    900 episodes; re-reading every episode's data file, ~3 s)."""
    from vla_sim.data.reader import DatasetReader
    from vla_sim.data.torch_dataset import VLADataset

    if held is None:
        return DemoArrays.from_dataset(VLADataset(data_dir))
    reader = DatasetReader(data_dir, validate=False)
    # the held episodes' files were checked when first read; only the appended ones are opened
    reader.validate(first_episode=int(held.episode_index.max()) + 1)
    return DemoArrays.grown(held, reader)


def _train(data: DemoArrays, run_dir: Path, bc: BCConfig, eval_fn: Callable | None,
           init: Callable | None, encoder: Any, scene: Any = None) -> BCResult:
    """One BC run on the whole aggregated dataset (resumed if a previous attempt left one)."""
    resume = (run_dir / "last").is_dir()
    return train_bc(data, run_dir, bc, resume=resume, eval_fn=eval_fn, encoder=encoder,
                    init_fn=init, scene_frames=scene)


def _scene_frames(out: Path, settings: CollectConfig, cfg: DAggerConfig, state: dict,
                  given: Any = None) -> Any:
    """The run's scene frames (None without ``scene_frames``): ``given`` ones or rendered,
    saved once into ``out/scene_frames.npz``. When that file exists (a resume) it wins: the
    frames a run trained on never change under it."""
    if not cfg.scene_frames:
        return None
    from vla_sim.data.scene_frames import SCENE_BASE_SEED, save_scene_frames, scene_frames_file

    path = out / SCENE_FRAMES_FILE
    if given is not None and not path.is_file():
        save_scene_frames(given, path)
        frames, source, seconds = given, "given", 0.0
    else:
        local = replace(cfg.scene_settings(settings), backend="process", ray_address="")
        frames, spent = scene_frames_file(path, local, cfg.scene_frames, cfg.scene_views,
                                          SCENE_BASE_SEED + cfg.seed, cfg.workers)
        source, seconds = ("file", 0.0) if spent is None else ("rendered", spent)
    if "scene_frames" not in state:
        state["scene_frames"] = {"frames": len(frames.states),
                                 "scenes": int(frames.episode_index.max()) + 1,
                                 "source": source, "seconds": round(seconds, 2)}
        atomic_write_json(out / STATE_FILE, state)
    log.info("dagger: %d scene frames (%s%s)", len(frames.states), source,
             f" in {seconds:.1f} s" if source == "rendered" else "")
    return frames


def _prepare(out: Path, cfg: DAggerConfig, resume: bool) -> dict[str, Any]:
    """Check ``out`` for a fresh run or a resumable one; return the state."""
    state_path = out / STATE_FILE
    now = config_to_dict(cfg)
    if resume:
        if not state_path.is_file() or not (out / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"cannot resume: no DAgger run in {out} "
                                    f"(needs {CONFIG_FILE} and {STATE_FILE})")
        saved = json.loads((out / CONFIG_FILE).read_text())
        for name, (unused, why) in RETIRED_FIELDS.items():
            if saved.get(name, unused) != unused:
                raise ValueError(f"cannot resume: the run in {out} used {name}="
                                 f"{saved[name]!r}: {why} was removed; start a new run")
        diffs = config_changes(saved, now, DAGGER_RESUMABLE + tuple(f"bc.{k}"
                                                                    for k in RESUMABLE_CHANGES),
                               defaults=config_defaults(cfg))
        if diffs:
            raise ValueError("cannot resume with a different config: " + "; ".join(diffs))
        atomic_write_json(out / CONFIG_FILE, now)  # record the new rounds / workers / backend
        return json.loads(state_path.read_text())
    if state_path.exists() or (out / "data").exists():
        raise ValueError(f"{out} already holds a DAgger run; pass resume=True (--resume) to "
                         "continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / CONFIG_FILE, now)
    state = {"completed_rounds": 0, "initial": None, "history": []}
    atomic_write_json(state_path, state)
    return state


def policy_dir(out: str | Path, k: int) -> Path:
    """The BC run trained on the demonstrations plus ``k`` rounds of rollouts."""
    return Path(out) / f"policy_{k}"


def train_dagger(demos: str | Path, out: str | Path, config: DAggerConfig | None = None,
                 resume: bool = False, eval_fn: Callable[[Any], float] | None = None,
                 scene_frames: Any = None) -> DAggerResult:
    """Run DAgger from the demonstrations in ``demos`` (a ``collect`` dataset, left untouched)
    into the run folder ``out`` (layout in the module docstring).

    Args:
        resume: continue the run in ``out`` (same config except ``rounds``, where the
            rollouts run (``workers``, ``backend``, ``ray_address``) and BC's logging knobs);
            finished rounds are skipped, a half-done round continues at its first uncommitted
            rollout or its BC checkpoint.
        eval_fn: ``policy -> success rate``, handed to every BC run (in-sim checks, ``best/``).
        scene_frames: frames already rendered (``DemoArrays``; the quickstart renders them once
            for its BC stage and DAgger) used instead of rendering ``cfg.scene_frames`` here;
            saved into the run folder like rendered ones.
    """
    cfg = config or DAggerConfig()
    cfg.check_scene_frames()
    if scene_frames is not None and not cfg.scene_frames:
        raise ValueError("scene frames were given but scene_frames is 0: set scene_frames to "
                         "their count")
    out, demos = Path(out), Path(demos)
    weights = None
    if cfg.task_weights:  # refuse weights the env cannot use before the run folder is written
        source = out / "data" if (out / "data").exists() else demos
        weights = rollout_weights(cfg, _rollout_settings(source, cfg).env)
    state = _prepare(out, cfg, resume)
    data_dir = out / "data"
    if not data_dir.exists():
        _copy_demos(demos, data_dir)
    settings = _rollout_settings(data_dir, cfg)
    writer = _open_writer(data_dir)
    if "demo_episodes" not in writer.info.get("vla_sim", {}).get("dagger", {}):
        writer.set_extra_info(dagger={"source": str(demos), "demo_episodes": writer.num_episodes,
                                      "seed": cfg.seed})

    def save() -> None:
        atomic_write_json(out / STATE_FILE, state)

    # Instruction features from the run dataset's feature cache: each string is encoded once
    # for the whole run (and its resumes), not again by every round's BC (~10 s a round).
    from vla_sim.data.text_cache import CachedTextEncoder

    text = CachedTextEncoder([data_dir], cfg.bc.policy.text_encoder)
    scene = _scene_frames(out, settings, cfg, state, scene_frames)

    # policy_0: BC on the demonstrations (or the given checkpoint).
    held: DemoArrays | None = None  # the dataset's arrays, grown round by round
    if cfg.init_policy:
        current = _checkpoint_dir(Path(cfg.init_policy))
    else:
        current = policy_dir(out, 0) / "last"
        if state["initial"] is None:
            t0 = time.perf_counter()
            held = round_data(data_dir)
            res = _train(held, policy_dir(out, 0), _round_bc_config(cfg, first=True),
                         eval_fn, None, text, scene)
            state["initial"] = {"bc_steps": res.steps, "val_loss": res.val_loss,
                                "frames": writer.num_frames,
                                "seconds": round(time.perf_counter() - t0, 2)}
            save()
            log.info("dagger: initial BC on %d demonstration frames: val loss %s, %.1f s",
                     writer.num_frames, _fmt(res.val_loss), state["initial"]["seconds"])
    if state["completed_rounds"]:
        current = policy_dir(out, state["completed_rounds"]) / "last"

    # One worker pool for every round (started at the first rollout that needs it): each worker
    # builds its env and expert once and reloads only the learner, once per round.
    pool: WorkerPool | None = None
    try:
        for r in range(state["completed_rounds"], cfg.rounds):
            t0, beta = time.perf_counter(), cfg.beta(r)
            done = {episode_metadata(e).get("dagger_index") for e in writer.episodes
                    if episode_metadata(e).get("dagger_round") == r}
            todo = [i for i in range(cfg.episodes_per_round) if i not in done]
            if todo and pool is None and (cfg.workers > 1 or cfg.backend != "process"):
                pool = _start_pool(settings, cfg.workers, cfg.backend, cfg.ray_address)
            job = _RolloutJob(settings=settings, policy_dir=str(current), beta=beta,
                              mixing=cfg.mixing, round_index=r, seed=cfg.seed,
                              episodes_per_round=cfg.episodes_per_round,
                              tasks=round_tasks(cfg, weights, r),
                              policy=ship_folder(current, cfg.backend, cfg.ray_address,
                                                 suffixes=CHECKPOINT_SUFFIXES)
                              if todo and cfg.backend == "ray" else None)

            # rollouts record today's goal-state layout; a dataset of older demos keeps its own
            _run_rollouts(job, todo, cfg.workers, lambda index, enc: writer.add_encoded(
                fit_env_states(enc, writer.env_state_dim)), pool)
            rows = [(e, episode_metadata(e)) for e in writer.episodes]
            ours = [(e, m) for e, m in rows if m.get("dagger_round") == r]
            writer.set_extra_info(dagger={**writer.info["vla_sim"]["dagger"],
                                          "relabelled_episodes": sum(bool(m.get("relabelled"))
                                                                     for _, m in rows)})
            rollout_s = time.perf_counter() - t0

            t1 = time.perf_counter()
            run = policy_dir(out, r + 1)
            init = _warm_start(current) if cfg.warm_start else None
            held = round_data(data_dir, held)
            res = _train(held, run, _round_bc_config(cfg, first=False), eval_fn, init, text,
                         scene)
            current = run / "last"
            copy_checkpoint(current, out / "last")
            frames = sum(int(e["length"]) for e, _ in ours)
            expert_steps = sum(int(m["expert_steps"]) for _, m in ours)
            record = {
                "round": r, "beta": beta, "episodes": len(ours),
                "rollout_success": sum(bool(e["vla_sim/success"]) for e, _ in ours) / len(ours),
                "task_success": task_success(e for e, _ in ours),
                "task_counts": task_counts(e for e, _ in ours),
                "learner_step_fraction": 1.0 - expert_steps / max(1, frames),
                "frames_added": frames, "dataset_frames": writer.num_frames, "bc_steps": res.steps,
                "val_loss": res.val_loss, "rollout_s": round(rollout_s, 2),
                "train_s": round(time.perf_counter() - t1, 2),
                "seconds": round(time.perf_counter() - t0, 2),
            }
            state["history"].append(record)
            state["completed_rounds"] = r + 1
            save()
            log.info("dagger round %d/%d: beta %.3f, %d rollouts, rollout success %.2f (learner "
                     "acted %.0f%% of steps), %d frames added (%d in all), BC val loss %s, %.1f s "
                     "(rollouts %.1f, BC %.1f)", r + 1, cfg.rounds, beta, record["episodes"],
                     record["rollout_success"], 100 * record["learner_step_fraction"], frames,
                     writer.num_frames, _fmt(res.val_loss), record["seconds"], rollout_s,
                     record["train_s"])
            if len(record["task_success"]) > 1:
                log.info("dagger round %d: per task (rollouts, success) %s", r + 1,
                         {t: (record["task_counts"][t], round(s, 2))
                          for t, s in record["task_success"].items()})
    finally:
        if pool is not None:
            pool.shutdown()
    return DAggerResult(out_dir=out, rounds_completed=state["completed_rounds"],
                        history=list(state["history"]), initial=state["initial"],
                        policy_dir=out / "last")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def relabelled_episodes(rows: Iterable[dict[str, Any]]) -> list[int]:
    """Indices of the episodes (episodes-parquet rows) that DAgger relabelled."""
    return [int(r["episode_index"]) for r in rows if episode_metadata(r).get("relabelled")]


__all__ = ["DAGGER_BASE_SEED", "DAggerConfig", "DAggerResult", "MixedControl", "dagger_rollout",
           "env_tasks", "episode_metadata", "policy_dir", "relabelled_episodes", "round_tasks",
           "rollout_weights", "task_counts", "task_plan", "task_success", "train_dagger"]
