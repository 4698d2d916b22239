"""A task: which objects are on the table, what the instruction asks, when it is done, and the
reward. A new task is one small file subclassing :class:`Task`.

Tasks read the scene through :class:`vla_sim.sim.client.Simulation` by object name. The
privileged state (object poses, target names) an expert or a state describer needs is exposed by
:meth:`Task.privileged_state`; nothing outside envs/ reads PyBullet bodies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from vla_sim.envs.goal_state import GOAL_STATE_DIM, GOAL_STATE_LAYOUT, PROJECTED_CAMERAS
from vla_sim.language.instructions import allowed_combo, make_instruction
from vla_sim.randomization.colors import COLOR_NAMES, SHAPES
from vla_sim.randomization.sample import Placement
from vla_sim.sim.client import Simulation
from vla_sim.sim.robots import Robot
from vla_sim.sim.scene import FOOTPRINT, Scene, half_height


@dataclass(frozen=True)
class SceneObject:
    color: str
    shape: str  # cube | cylinder | sphere | tray | zone

    @property
    def name(self) -> str:
        return f"{self.color}_{self.shape}"

    @property
    def movable(self) -> bool:
        return self.shape in ("cube", "cylinder", "sphere")


@dataclass(frozen=True)
class TaskInstance:
    """Everything about an episode that language refers to; independent of randomization."""

    task: str
    objects: tuple[SceneObject, ...]  # in placement order (shuffled)
    roles: dict = field(hash=False)  # e.g. {"object": "red_cube", "destination": "blue_tray"}
    instruction: str
    template: str
    split: str

    def placements(self) -> list[Placement]:
        return [Placement(o.name, o.color, o.shape, FOOTPRINT[o.shape], o.movable)
                for o in self.objects]


class Task:
    name: ClassVar[str]
    target_shapes: ClassVar[tuple[str, ...]] = SHAPES
    n_other_objects: ClassVar[int] = 1  # non-target movable objects (so language matters)
    same_color_distractor: float = 0.0
    """Probability that a scene gets a distractor of the target's colour (the env sets it)."""

    def __init__(self, sim: Simulation, robot: Robot) -> None:
        self.sim = sim
        self.robot = robot
        self.instance: TaskInstance | None = None
        # The scene whose cameras the goal state's image coordinates refer to; the env sets it.
        # Without one (a task driven directly), those coordinates are 0 and marked not visible.
        self.scene: Scene | None = None

    # -- episode set-up ------------------------------------------------------------------------
    def sample_instance(self, rng: np.random.Generator, split: str) -> TaskInstance:
        raise NotImplementedError

    def _pick_objects(self, rng: np.random.Generator, split: str, n: int,
                      shapes: tuple[str, ...]) -> list[SceneObject]:
        """``n`` movable objects with distinct colour-shape pairs; the first is the target.
        With probability ``same_color_distractor`` one of the others has the target's colour
        and another shape (where the split allows one): a scene only the shape word decides."""
        target_pool = [(c, s) for c in COLOR_NAMES for s in shapes
                       if allowed_combo(c, s, split, target=True)]
        c, s = target_pool[int(rng.integers(len(target_pool)))]
        chosen = [SceneObject(c, s)]
        other_pool = [(c2, s2) for c2 in COLOR_NAMES for s2 in shapes
                      if (c2, s2) != (c, s) and allowed_combo(c2, s2, split, target=False)]
        # Drawn only when the option is on, so default episodes keep their seeds' scenes.
        if n > 1 and self.same_color_distractor > 0 and rng.random() < self.same_color_distractor:
            twins = [pair for pair in other_pool if pair[0] == c]
            if twins:
                twin = twins[int(rng.integers(len(twins)))]
                chosen.append(SceneObject(*twin))
                other_pool.remove(twin)
        for k in rng.permutation(len(other_pool))[: n - len(chosen)]:
            chosen.append(SceneObject(*other_pool[int(k)]))
        return chosen

    def _pick_destinations(self, rng: np.random.Generator, shape: str, n: int) -> list[SceneObject]:
        colors = rng.permutation(len(COLOR_NAMES))[:n]
        return [SceneObject(COLOR_NAMES[int(i)], shape) for i in colors]

    def _finish(self, rng: np.random.Generator, split: str, objects: list[SceneObject],
                roles: dict, obj: SceneObject, dest: SceneObject | None) -> TaskInstance:
        order = rng.permutation(len(objects))
        ins = make_instruction(self.name, split, (obj.color, obj.shape),
                               (dest.color, dest.shape) if dest else None, rng)
        return TaskInstance(self.name, tuple(objects[int(i)] for i in order), roles, ins.text,
                            ins.template, split)

    def swap_instance(self, instance: TaskInstance, rng: np.random.Generator) -> TaskInstance:
        """The same scene with the instruction naming another object: the language probe.

        The target role (``object``) moves to another movable object of ``instance`` that the
        task can act on (drawn with ``rng``); the destination, where the task has one, stays.
        The objects (and so the scene) are unchanged; the sentence keeps the original template
        with the new object's words. Raises ``ValueError`` when the scene has no other object.
        """
        taken = set(instance.roles.values())
        candidates = [o for o in instance.objects
                      if o.movable and o.shape in self.target_shapes and o.name not in taken]
        if not candidates:
            raise ValueError(f"{self.name}: no other movable object to swap the instruction to "
                             f"(objects {[o.name for o in instance.objects]})")
        new = candidates[int(rng.integers(len(candidates)))]
        by_name = {o.name: o for o in instance.objects}
        dest = by_name[instance.roles["destination"]] if "destination" in instance.roles else None
        ins = make_instruction(self.name, instance.split, (new.color, new.shape),
                               (dest.color, dest.shape) if dest else None, rng,
                               template=instance.template)
        return dataclasses.replace(instance, roles={**instance.roles, "object": new.name},
                                   instruction=ins.text)

    def reset(self, instance: TaskInstance) -> None:
        self.instance = instance

    # -- evaluation ----------------------------------------------------------------------------
    def is_success(self) -> bool:
        raise NotImplementedError

    def is_success_for(self, roles: dict) -> bool:
        """The success predicate judged on ``roles`` instead of the instruction's, in the current
        scene state (e.g. "did the original task anyway" under the swap probe)."""
        assert self.instance is not None, "reset() first"
        current = self.instance
        self.instance = dataclasses.replace(current, roles=dict(roles))
        try:
            return bool(self.is_success())
        finally:
            self.instance = current

    def dense_reward(self, success: bool | None = None) -> float:
        """Negative distances toward completion (higher is better), plus 1 on success.

        ``success``: this step's :meth:`is_success`, when the caller has it already (saves a
        second evaluation of the predicate per step)."""
        raise NotImplementedError

    # -- privileged state ----------------------------------------------------------------------
    def goal_state(self) -> np.ndarray:
        """float32 (``GOAL_STATE_DIM``,) privileged label of the current frame, laid out as
        ``GOAL_STATE_LAYOUT`` (vla_sim.envs.goal_state): the instructed object's and the
        destination's positions (m, world; the destination is the object again when the task has
        none, e.g. Reach), their normalised image coordinates and visibility in the front and
        wrist cameras as they render now, and whether the gripper holds the object. Recorded in
        datasets as ``observation.environment_state``; never a policy input (BC predicts it as
        auxiliary targets that teach *which* object the instruction names and where it is)."""
        assert self.instance is not None, "reset() first"
        roles = self.instance.roles
        obj = self.position(roles["object"])
        dest = self.position(roles["destination"]) if "destination" in roles else obj
        out = np.zeros(GOAL_STATE_DIM, np.float32)
        out[GOAL_STATE_LAYOUT["object_xyz"]] = obj
        out[GOAL_STATE_LAYOUT["destination_xyz"]] = dest
        if self.scene is not None:
            for cam in PROJECTED_CAMERAS:
                uv, visible = self.scene.project(cam, np.stack([obj, dest]))
                out[GOAL_STATE_LAYOUT[f"{cam}_object_uv"]] = uv[0]
                out[GOAL_STATE_LAYOUT[f"{cam}_destination_uv"]] = uv[1]
                out[GOAL_STATE_LAYOUT[f"{cam}_visible"]] = visible
        out[GOAL_STATE_LAYOUT["holding"]] = float(self.held_object() == roles["object"])
        return out

    def privileged_state(self) -> dict:
        """Plain data for scripted experts and state describers.

        ``objects``: name -> {position (m, world), yaw (rad), color, shape, half_height (m)};
        ``roles``: which object names the instruction refers to; ``holding``: name of the object
        held between the fingers or None; ``ee_position``, ``gripper_opening`` (m).
        """
        assert self.instance is not None, "reset() first"
        objects = {}
        for name in self._scene_names():
            shape = name.split("_")[-1]
            pos = self.sim.get_position(name)
            quat = self.sim.get_orientation(name)
            yaw = float(np.arctan2(2 * (quat[3] * quat[2] + quat[0] * quat[1]),
                                   1 - 2 * (quat[1] ** 2 + quat[2] ** 2)))
            objects[name] = {"position": pos.tolist(), "yaw": yaw,
                             "color": name.split("_")[-2], "shape": shape,
                             "half_height": half_height(shape)}
        return {
            "task": self.name,
            "instruction": self.instance.instruction,
            "roles": dict(self.instance.roles),
            "objects": objects,
            "ee_position": self.robot.ee_position().tolist(),
            "gripper_opening": self.robot.gripper_opening(),
            "holding": self.held_object(),
            "success": self.is_success(),
        }

    def _scene_names(self) -> list[str]:
        return [n for n in self.sim.bodies if n not in ("robot", "floor", "table")]

    def held_object(self) -> str | None:
        """The movable object touched by both fingers, if any."""
        fingers = self.robot.finger_links()
        client, rid = self.sim.client, self.robot.uid
        for name in self._scene_names():
            if name.split("_")[-1] not in ("cube", "cylinder", "sphere"):
                continue
            uid = self.sim.body_id(name)
            touching = {c[3] for c in client.getContactPoints(rid, uid)}
            if all(f in touching for f in fingers):
                return name
        return None

    def robot_touches(self, name: str) -> bool:
        return len(self.sim.client.getContactPoints(self.robot.uid, self.sim.body_id(name))) > 0

    def position(self, name: str) -> np.ndarray:
        return self.sim.get_position(name)
