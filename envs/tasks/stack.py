"""Stack: put the named cube on top of the other named cube and let go."""

from __future__ import annotations

import numpy as np

from vla_sim.envs.tasks.base import SceneObject, Task, TaskInstance
from vla_sim.sim.scene import CUBE_HALF


class StackTask(Task):
    name = "stack"
    target_shapes = ("cube",)

    def sample_instance(self, rng: np.random.Generator, split: str) -> TaskInstance:
        # Top cube (named first), base cube and one more cube of other colours.
        objs = self._pick_objects(rng, split, 3, ("cube",))
        top, base = objs[0], objs[1]
        roles = {"object": top.name, "destination": base.name}
        return self._finish(rng, split, objs, roles, top, base)

    def is_success(self) -> bool:
        top_name = self.instance.roles["object"]
        top = self.position(top_name)
        base = self.position(self.instance.roles["destination"])
        aligned = np.linalg.norm(top[:2] - base[:2]) < CUBE_HALF
        on_top = abs(top[2] - base[2] - 2 * CUBE_HALF) < 0.008
        return bool(aligned and on_top and not self.robot_touches(top_name))

    def dense_reward(self, success: bool | None = None) -> float:
        top = self.position(self.instance.roles["object"])
        base = self.position(self.instance.roles["destination"])
        reach = float(np.linalg.norm(self.robot.ee_position() - top))
        place = float(np.linalg.norm(top - (base + np.array([0, 0, 2 * CUBE_HALF]))))
        return -reach - place + float(self.is_success() if success is None else success)


__all__ = ["StackTask", "SceneObject"]
