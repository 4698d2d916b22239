"""PickPlace: pick up the named object and release it inside the named container."""

from __future__ import annotations

import numpy as np

from vla_sim.envs.tasks.base import Task, TaskInstance
from vla_sim.sim.scene import TRAY_HALF, TRAY_WALL


class PickPlaceTask(Task):
    name = "pick_place"

    def sample_instance(self, rng: np.random.Generator, split: str) -> TaskInstance:
        objs = self._pick_objects(rng, split, 1 + self.n_other_objects, self.target_shapes)
        trays = self._pick_destinations(rng, "tray", 2)
        roles = {"object": objs[0].name, "destination": trays[0].name}
        return self._finish(rng, split, objs + trays, roles, objs[0], trays[0])

    def is_success(self) -> bool:
        name = self.instance.roles["object"]
        obj = self.position(name)
        tray = self.position(self.instance.roles["destination"])
        inside = bool(np.all(np.abs(obj[:2] - tray[:2]) < TRAY_HALF - 0.01))
        resting = obj[2] < TRAY_WALL + 0.02
        return inside and resting and not self.robot_touches(name)

    def dense_reward(self, success: bool | None = None) -> float:
        obj = self.position(self.instance.roles["object"])
        tray = self.position(self.instance.roles["destination"])
        reach = float(np.linalg.norm(self.robot.ee_position() - obj))
        place = float(np.linalg.norm(obj[:2] - tray[:2]))
        return -reach - place + float(self.is_success() if success is None else success)
