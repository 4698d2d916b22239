"""Scene frames: labelled images that cost only rendering (no expert, no episode).

Demonstrations show each scene from the arm's path to the named object, so a policy can learn
"the object is where my gripper is heading" instead of finding it in the image: on Push the
policy's estimate of the object collapses towards the gripper once it leaves that path (median
error 4 cm at its stalls, against 2.7 cm on the expert's path). Scene frames break that
correlation. Each scene is a fresh episode reset of the train split (its own seed stream,
:data:`SCENE_BASE_SEED`); the gripper is then teleported (:meth:`VLAEnv.place_gripper`) to
``views`` random places, half near the named object or its destination and half anywhere over
the table, with a random opening, and each view is recorded with its goal state
(:mod:`vla_sim.envs.goal_state`: where the object and destination are, in the world and in
every camera's image). BC trains its grounding and goal-state heads on them beside the
demonstrations (``BCConfig.scene_batch``); they carry no action.

The frames come back as :class:`DemoArrays` (zero actions; one ``episode_index`` per scene) and
are saved to one ``.npz`` file, written atomically, so a resumed run reads them instead of
rendering again.
"""

from __future__ import annotations

import functools
import io
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from vla_sim.data.collect import CollectConfig, make_env
from vla_sim.data.demos import DemoArrays
from vla_sim.utils.io import atomic_write_bytes
from vla_sim.utils.seeding import episode_seed
from vla_sim.utils.workers import WorkerPool

SCENE_BASE_SEED = 3_000_017
"""Base seed of scene resets: apart from the demonstrations', DAgger's and evaluation's."""
NEAR_STD = 0.05
"""Spread (m) of a "near" view around the named object or destination."""
TABLE_LOW = np.array([-0.30, -0.30, 0.02])
TABLE_HIGH = np.array([0.20, 0.30, 0.30])
"""Box (m, world) of the "anywhere" views: over the table, above its top."""
CHUNK_SCENES = 20
"""Scenes per worker job."""

_ENV: dict[str, Any] = {}


def gripper_places(rng: np.random.Generator, anchors: np.ndarray, views: int,
                   finger_max: float) -> tuple[np.ndarray, np.ndarray]:
    """``views`` gripper positions (views, 3) and finger openings (views,): even views near
    one of ``anchors`` (K, 3) (xy spread :data:`NEAR_STD`, height 2-15 cm), odd views uniform
    in the table box."""
    positions = np.empty((views, 3))
    for v in range(views):
        if v % 2 == 0:
            anchor = anchors[rng.integers(len(anchors))]
            xy = anchor[:2] + rng.normal(0.0, NEAR_STD, 2)
            positions[v] = [xy[0], xy[1], rng.uniform(0.02, 0.15)]
        else:
            positions[v] = rng.uniform(TABLE_LOW, TABLE_HIGH)
    openings = rng.uniform(0.0, finger_max, views)
    return positions, openings


def _init(settings: CollectConfig) -> None:
    _ENV["env"] = make_env(settings)


def _render(seed: int, scenes: range, views: int) -> dict[str, Any]:
    """Frames of ``scenes`` (indices into the seed stream), ``views`` each, in order."""
    env = _ENV["env"]
    base = env.unwrapped
    out: dict[str, list] = {"images": [], "states": [], "env_states": [], "instructions": []}
    for s in scenes:
        obs, _ = env.reset(seed=episode_seed(seed, s))
        task, roles = base.task, base.instance.roles
        anchors = np.array([task.position(roles[k]) for k in ("object", "destination")
                            if k in roles])
        rng = np.random.default_rng([seed, s])
        positions, openings = gripper_places(rng, anchors, views, base.robot.finger_max)
        for pos, opening in zip(positions, openings):
            obs = base.place_gripper(pos, float(opening))
            out["images"].append({k: v for k, v in obs.items() if k.endswith("image")})
            out["states"].append(obs["state"])
            out["env_states"].append(task.goal_state())
            out["instructions"].append(obs["instruction"])
    return out


def _close() -> None:
    if "env" in _ENV:
        _ENV.pop("env").close()


def render_scene_frames(settings: CollectConfig, scenes: int, views: int = 4,
                        seed: int = SCENE_BASE_SEED, workers: int = 1) -> DemoArrays:
    """``scenes`` x ``views`` labelled frames of ``settings``' env (its cameras, image size,
    robot, randomization and instruction split), on ``workers`` processes; the result is the
    same for any worker count."""
    if scenes < 1 or views < 1:
        raise ValueError(f"scene frames need scenes >= 1 and views >= 1, got {scenes} and {views}")
    chunks = [range(i, min(i + CHUNK_SCENES, scenes)) for i in range(0, scenes, CHUNK_SCENES)]
    if workers <= 1:
        _init(settings)
        try:
            parts = [_render(seed, c, views) for c in chunks]
        finally:
            _close()
    else:
        pool = WorkerPool(min(workers, len(chunks)), _init, (settings,)).start()
        try:
            parts = list(pool.map(functools.partial(_render, seed, views=views), chunks))
        finally:
            pool.shutdown()
    images = [im for part in parts for im in part["images"]]
    texts = [t for part in parts for t in part["instructions"]]
    instructions = sorted(set(texts))
    lookup = {t: i for i, t in enumerate(instructions)}
    n = len(texts)
    return DemoArrays(
        images={k: np.stack([im[k] for im in images]) for k in images[0]},
        states=np.stack([s for part in parts for s in part["states"]]).astype(np.float32),
        actions=np.zeros((n, 4), np.float32),
        instructions=instructions,
        instruction_index=np.array([lookup[t] for t in texts], np.int64),
        episode_index=np.arange(n, dtype=np.int64) // views,
        env_states=np.stack([g for part in parts for g in part["env_states"]]).astype(np.float32))


def save_scene_frames(frames: DemoArrays, path: str | Path) -> None:
    """Write ``frames`` to one ``.npz`` file, atomically (a crash leaves the old file or none)."""
    buf = io.BytesIO()
    np.savez(buf, states=frames.states, actions=frames.actions,
             instructions=np.array(frames.instructions, dtype=str),
             instruction_index=frames.instruction_index, episode_index=frames.episode_index,
             env_states=frames.env_states, **{f"images/{k}": v for k, v in frames.images.items()})
    atomic_write_bytes(Path(path), buf.getvalue())


def load_scene_frames(path: str | Path) -> DemoArrays:
    """Read :func:`save_scene_frames`' file; a missing or damaged file raises ValueError
    naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return DemoArrays(
                images={k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("images/")},
                states=z["states"], actions=z["actions"],
                instructions=[str(t) for t in z["instructions"]],
                instruction_index=z["instruction_index"], episode_index=z["episode_index"],
                env_states=z["env_states"])
    except FileNotFoundError:
        raise ValueError(f"{path}: no scene frames file") from None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable scene frames file ({exc})") from None


def scene_frames_file(path: str | Path, settings: CollectConfig, frames: int, views: int = 4,
                      seed: int = SCENE_BASE_SEED, workers: int = 1
                      ) -> tuple[DemoArrays, float | None]:
    """The frames in ``path``, rendered first when the file is missing (at least ``frames`` of
    them: whole scenes of ``views`` views). Returns them and the seconds spent rendering (None
    when they were read back), so a resumed run never renders twice."""
    path = Path(path)
    if path.is_file():
        return load_scene_frames(path), None
    t0 = time.perf_counter()
    result = render_scene_frames(settings, -(-frames // views), views, seed, workers)
    save_scene_frames(result, path)
    return result, time.perf_counter() - t0


__all__ = ["SCENE_BASE_SEED", "gripper_places", "load_scene_frames", "render_scene_frames",
           "save_scene_frames", "scene_frames_file"]
