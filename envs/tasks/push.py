"""Push: slide the named object onto the named coloured zone (no grasping needed)."""

from __future__ import annotations

import numpy as np

from vla_sim.envs.tasks.base import Task, TaskInstance

TOLERANCE = 0.04  # object centre within this horizontal distance of the zone centre (m)


class PushTask(Task):
    name = "push"
    target_shapes = ("cube", "cylinder")  # spheres roll away when pushed

    def sample_instance(self, rng: np.random.Generator, split: str) -> TaskInstance:
        objs = self._pick_objects(rng, split, 1 + self.n_other_objects, self.target_shapes)
        zones = self._pick_destinations(rng, "zone", 2)
        roles = {"object": objs[0].name, "destination": zones[0].name}
        return self._finish(rng, split, objs + zones, roles, objs[0], zones[0])

    def _distance(self) -> float:
        obj = self.position(self.instance.roles["object"])
        zone = self.position(self.instance.roles["destination"])
        return float(np.linalg.norm(obj[:2] - zone[:2]))

    def is_success(self) -> bool:
        return self._distance() < TOLERANCE

    def dense_reward(self, success: bool | None = None) -> float:
        obj = self.position(self.instance.roles["object"])
        reach = float(np.linalg.norm(self.robot.ee_position() - obj))
        done = self.is_success() if success is None else success
        return -self._distance() - 0.5 * reach + float(done)
