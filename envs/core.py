"""The language-conditioned tabletop env: a thin composition of a Robot, a Scene and a Task.

Observation: ``Dict(image uint8 (S,S,3), [wrist_image], state float32 (22,), instruction Text)``.
Action: ``Box(-1, 1, (4,))``: end-effector displacement (x, y, z) scaled to ``max_ee_step`` m per
control step, and the gripper (-1 closed .. +1 open). Out-of-range actions are clipped to
[-1, 1]; wrong shapes and non-finite values raise ``ValueError``. ``image_size`` and
``render_size`` are checked in ``__init__`` (PyBullet aborts the process on a negative size).
After ``close()`` (idempotent), ``reset``/``step``/``render`` raise ``RuntimeError`` saying so.

Reset options: ``randomization`` (replay a recorded randomization sample), ``task`` (a multi-task
env plays this task instead of drawing one: the episode is the one the seed gives under that task,
so ``(seed, task)`` replays it) and ``swap_object``
(the language probe: the same scene, pixel for pixel, with the instruction naming another movable
object of the scene; success, reward, goal and privileged state follow the named object, and
``info["original_task"]`` reports the unswapped instruction, roles and whether its predicate
holds).

``same_color_distractor`` (default 0): the probability that an episode's scene holds a
distractor of the target's colour with another shape, so only the shape word picks the target;
a training-distribution knob (evaluation keeps 0, the uniform draw: about 15% of Reach's
scenes, 30 of its first 100 evaluation scenes), and at 0 every seed gives the scene it always
gave.
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vla_sim.envs.cameras import CAMERAS
from vla_sim.envs.tasks import TASKS, Task, TaskInstance
from vla_sim.language.instructions import HELDOUT_COMBOS, check_split
from vla_sim.randomization import (
    RandomizationConfig,
    RandomizationSample,
    resolve_randomization,
    sample_randomization,
)
from vla_sim.sim.client import SimConfig, Simulation
from vla_sim.sim.robots import ROBOTS, STATE_DIM, make_robot
from vla_sim.sim.scene import Scene

INSTRUCTION_MAX_LENGTH = 256
REWARD_TYPES = ("dense", "sparse")
IMAGE_SIZE_RANGE = (16, 512)  # observation images, pixels per side
RENDER_SIZE_RANGE = (8, 2048)  # render() frames, pixels per side (EvalConfig allows >= 8)


class VLAEnv(gym.Env):
    """Tabletop manipulation with a natural-language instruction per episode."""

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 20}

    def __init__(self, task: str = "pick_place", robot: str = "panda", image_size: int = 64,
                 cameras: Sequence[str] = ("front",), randomization: Any = "low",
                 instruction_split: str = "train", render_mode: str | None = None,
                 render_size: int = 256, reward_type: str = "dense", depth: bool = False,
                 segmentation: bool = False, detailed_meshes: bool = False,
                 control_hz: int = 20, physics_hz: int = 240,
                 tasks: Sequence[str] | None = None,
                 same_color_distractor: float = 0.0) -> None:
        super().__init__()
        self._closed = False
        # ---- validate every argument before touching PyBullet ----
        self.task_names = self._resolve_tasks(task, tasks)
        if (isinstance(same_color_distractor, bool)
                or not isinstance(same_color_distractor, (int, float))
                or not 0.0 <= same_color_distractor <= 1.0):
            raise ValueError(f"same_color_distractor must be a probability in [0, 1], got "
                             f"{same_color_distractor!r}")
        if not isinstance(robot, str) or robot not in ROBOTS:
            raise ValueError(f"unknown robot {robot!r}; valid robots: {sorted(ROBOTS)}")
        image_size = _check_size("image_size", image_size, *IMAGE_SIZE_RANGE)
        # render() sizes: PyBullet aborts the process (std::bad_alloc) on a negative size and
        # divides by zero on 0, so they are refused here, before any client exists
        render_size = _check_size("render_size", render_size, *RENDER_SIZE_RANGE)
        if isinstance(cameras, str) or not isinstance(cameras, Sequence):
            raise ValueError(f"cameras must be a sequence of camera names starting with 'front' "
                             f"from {list(CAMERAS)}, got {cameras!r}")
        cameras = tuple(cameras)
        bad = [c for c in cameras if not isinstance(c, str) or c not in CAMERAS]
        if bad or not cameras or cameras[0] != "front" or len(set(cameras)) != len(cameras):
            raise ValueError(f"cameras must start with 'front' and use each of {list(CAMERAS)} "
                             f"at most once, got {list(cameras)}")
        if render_mode is not None and (not isinstance(render_mode, str)
                                        or render_mode not in self.metadata["render_modes"]):
            raise ValueError(f"unknown render_mode {render_mode!r}; valid: "
                             f"{self.metadata['render_modes']} or None")
        if not isinstance(reward_type, str) or reward_type not in REWARD_TYPES:
            raise ValueError(f"unknown reward_type {reward_type!r}; valid: {list(REWARD_TYPES)}")
        self.split = check_split(instruction_split)
        self.randomization: RandomizationConfig = resolve_randomization(randomization)
        self.robot_name, self.image_size, self.cameras = robot, image_size, cameras
        self.render_mode, self.render_size, self.reward_type = render_mode, render_size, reward_type
        self.depth, self.segmentation = depth, segmentation
        self.metadata = {**self.metadata, "render_fps": control_hz}

        # ---- spaces ----
        img = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        obs = {"image": img}
        if "wrist" in cameras:
            obs["wrist_image"] = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        if depth:
            obs["depth"] = spaces.Box(0.0, np.inf, (image_size, image_size), np.float32)
        if segmentation:
            obs["segmentation"] = spaces.Box(-1, 2**24, (image_size, image_size), np.int32)
        obs["state"] = spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)
        obs["instruction"] = spaces.Text(max_length=INSTRUCTION_MAX_LENGTH, min_length=1,
                                         charset=_CHARSET)
        self.observation_space = spaces.Dict(obs)
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)

        # ---- simulation: one private client per env ----
        self.sim = Simulation(SimConfig(physics_hz=physics_hz, control_hz=control_hz,
                                        gui=render_mode == "human"))
        self.robot = make_robot(robot, self.sim, detailed=detailed_meshes)
        self.scene = Scene(self.sim, self.robot)
        self._tasks: dict[str, Task] = {n: TASKS[n](self.sim, self.robot) for n in self.task_names}
        for task in self._tasks.values():
            task.scene = self.scene  # the cameras that goal_state()'s image coordinates refer to
            task.same_color_distractor = float(same_color_distractor)
        self.same_color_distractor = float(same_color_distractor)
        self.task: Task = self._tasks[self.task_names[0]]
        self.instance: TaskInstance | None = None
        self._placed = False  # place_gripper() since the last reset: step() refuses
        self.sample: RandomizationSample | None = None
        self.original_instance: TaskInstance | None = None  # set when reset swapped the target
        self._last_seed: int | None = None

    @staticmethod
    def _resolve_tasks(task: str, tasks: Sequence[str] | None) -> tuple[str, ...]:
        names = tuple(tasks) if task == "multitask" and tasks else (
            tuple(TASKS) if task == "multitask" else (task,))
        bad = [n for n in names if n not in TASKS]
        if bad:
            raise ValueError(f"unknown task {bad[0]!r}; valid tasks: {sorted(TASKS)} or 'multitask'")
        return names

    # ------------------------------------------------------------------------------------------
    def set_randomization(self, randomization: Any) -> None:
        """Change the randomization level or config between episodes (curriculum hook)."""
        self.randomization = resolve_randomization(randomization)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode. ``options``: ``randomization`` (a recorded sample or its dict),
        ``task`` (one of ``task_names``; None: drawn from the seed) and ``swap_object`` (bool:
        the same scene with the instruction naming another movable object, the destination
        kept; see :meth:`Task.swap_instance`)."""
        self._check_open("reset")
        super().reset(seed=seed)
        self._last_seed = seed
        options = options or {}
        # Independent child streams: the task (objects, instruction) never depends on the
        # randomization level, and the randomization never shifts the task draw.
        episode = np.random.SeedSequence(int(self.np_random.integers(0, 2**63)))
        task_rng, rand_rng = (np.random.default_rng(s) for s in episode.spawn(2))
        name = self.task_names[int(task_rng.integers(len(self.task_names)))]
        if options.get("task") is not None:  # drawn above anyway: the rest of the stream is kept
            name = self._check_task_option(options["task"])
        self.task = self._tasks[name]
        self.instance = self.task.sample_instance(task_rng, self.split)
        if "randomization" in options and options["randomization"] is not None:
            sample = options["randomization"]
            self.sample = (sample if isinstance(sample, RandomizationSample)
                           else RandomizationSample.from_dict(sample))
            expected = {o.name for o in self.instance.objects}
            got = {o.name for o in self.sample.objects} - set(self.sample.distractors)
            if expected != got:
                raise ValueError(f"randomization sample objects {sorted(got)} do not match this "
                                 f"episode's objects {sorted(expected)}: replay with the seed the "
                                 "sample was recorded with")
        else:
            # Train episodes never show a held-out colour-shape pair, not even as a distractor.
            exclude = HELDOUT_COMBOS if self.split == "train" else frozenset()
            self.sample = sample_randomization(self.randomization, self.instance.placements(),
                                               rand_rng, exclude)
        self._sample_dict = self.sample.to_dict()
        self.original_instance = None
        if options.get("swap_object"):
            # Drawn after the scene: the objects, their placement and the randomization sample
            # are those of the unswapped episode; only the roles and the sentence change.
            self.original_instance = self.instance
            self.instance = self.task.swap_instance(self.instance, task_rng)
        self.robot.reset()
        self._placed = False
        self.scene.apply(self.sample)
        self.task.reset(self.instance)
        return self._observation(), self._info(False)

    def step(self, action):
        self._check_open("step")
        if self.instance is None:
            raise RuntimeError("call reset() before step()")
        if self._placed:
            raise RuntimeError("place_gripper() teleported the arm out of the episode; call "
                               "reset() before step()")
        action = self._check_action(action)
        self.robot.apply_action(action)
        self.sim.step()
        success = self.task.is_success()
        if self.reward_type == "sparse":
            reward = float(success)
        else:
            reward = self.task.dense_reward(success)
        return self._observation(), reward, success, False, self._info(success)

    def place_gripper(self, position: Sequence[float], opening: float) -> dict:
        """Teleport the gripper to ``position`` (m, world; clipped to the workspace), each finger
        ``opening`` m open, and return the observation there; no physics step, no episode step.

        Frames that cost only rendering: the scene of this episode seen with the arm anywhere,
        which :mod:`vla_sim.data.scene_frames` labels for grounding."""
        self._check_open("place_gripper")
        if self.instance is None:
            raise RuntimeError("call reset() before place_gripper()")
        pos = np.asarray(position, dtype=np.float64)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise ValueError(f"position must be 3 finite numbers (x, y, z), got {pos.tolist()}")
        self.robot.place(pos, float(opening))
        self._placed = True
        return self._observation()

    def _check_task_option(self, name: Any) -> str:
        if name not in self.task_names:
            raise ValueError(f"reset option task={name!r} is not a task of this env; its tasks: "
                             f"{list(self.task_names)}")
        return str(name)

    def _check_action(self, action) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (4,):
            raise ValueError(f"action must have shape (4,) (dx, dy, dz, gripper), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {a.tolist()}")
        return np.clip(a, -1.0, 1.0)  # documented: out-of-range actions are clipped

    def _observation(self) -> dict:
        obs: dict[str, Any] = {}
        front = self.scene.render_camera("front", self.image_size, self.depth, self.segmentation)
        obs["image"] = front["rgb"]
        if "wrist" in self.cameras:
            obs["wrist_image"] = self.scene.render_camera("wrist", self.image_size)["rgb"]
        if self.depth:
            obs["depth"] = front["depth"]
        if self.segmentation:
            obs["segmentation"] = front["segmentation"]
        obs["state"] = self.robot.proprio()
        obs["instruction"] = self.instance.instruction
        return obs

    def _info(self, success: bool) -> dict:
        info = {"is_success": bool(success), "task": self.task.name,
                "instruction": self.instance.instruction,
                # a fresh copy each call (users keep infos); to_dict() once per episode is ~3 ms
                "randomization": _copy_plain(self._sample_dict), "seed": self._last_seed}
        if self.original_instance is not None:
            roles = self.original_instance.roles
            info["original_task"] = {"instruction": self.original_instance.instruction,
                                     "roles": dict(roles),
                                     "is_success": self.task.is_success_for(roles)}
        return info

    # ------------------------------------------------------------------------------------------
    def privileged_state(self) -> dict:
        """Object poses and roles for scripted experts and state describers (see Task)."""
        self._check_open("privileged_state")
        if self.instance is None:
            raise RuntimeError("call reset() before privileged_state()")
        return self.task.privileged_state()

    def render(self):
        self._check_open("render")
        if self.render_mode == "rgb_array":
            return self.scene.render_camera("front", self.render_size)["rgb"]
        return None  # "human": the PyBullet GUI window shows the scene

    def close(self) -> None:
        """Release the PyBullet client; calling it again is a no-op."""
        self._closed = True
        sim = getattr(self, "sim", None)  # absent when __init__ refused its arguments
        if sim is not None:
            sim.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self, call: str) -> None:
        # without this, a closed client answers with pybullet's bare "Not connected to physics
        # server" from deep inside the robot or the renderer
        if self._closed:
            raise RuntimeError(f"{call}() after close(): this VLAEnv is closed and its PyBullet "
                               f"client released; make a new env")


def _check_size(name: str, value: Any, low: int, high: int) -> int:
    """An image side in pixels: a Python or numpy integer (not a bool) in [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not low <= value <= high:
        raise ValueError(f"{name} must be an int in [{low}, {high}], got {value!r}")
    return int(value)


def _copy_plain(value):
    """Copy of plain data (dicts, lists, scalars): ~20x faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: _copy_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_plain(v) for v in value]
    return value


_CHARSET = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.'-")
