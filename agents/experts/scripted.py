"""Scripted experts: waypoint controllers driven by the env's documented privileged state.

Each expert is stateless between calls: the phase (approach, descend, grasp, carry, release,
retreat) is recomputed from the privileged state every step, so an expert can take over mid-
episode and never gets out of sync with the simulator. Every expert is a policy in the
evaluator's sense: ``act(obs, deterministic=True) -> action (4,)``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from vla_sim.sim.scene import TRAY_HALF

HOVER = 0.09  # carry / approach height above the table (m)
OPEN, CLOSE = 1.0, -1.0


def _move(ee: np.ndarray, target: np.ndarray, max_step: float, gripper: float) -> np.ndarray:
    delta = np.clip((np.asarray(target) - ee) / max_step, -1.0, 1.0)
    return np.array([*delta, gripper], dtype=np.float32)


def _xy_dist(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a)[:2] - np.asarray(b)[:2]))


class ScriptedExpert:
    """Base class: reads ``env.unwrapped.privileged_state()`` and returns an action."""

    def __init__(self, env, noise_std: float = 0.0, seed: int | None = None) -> None:
        self.env = env.unwrapped
        self.max_step = self.env.robot.max_ee_step
        self.noise_std = noise_std
        self.rng = np.random.default_rng(seed)

    def act(self, obs=None, deterministic: bool = True) -> np.ndarray:
        state = self.env.privileged_state()
        action = self.plan(state)
        if self.noise_std > 0 and not deterministic:
            action[:3] += self.rng.normal(0, self.noise_std, 3)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def reset(self) -> None:  # stateless; kept for API symmetry with learned policies
        pass

    def plan(self, s: dict) -> np.ndarray:
        raise NotImplementedError


class ReachExpert(ScriptedExpert):
    """Travel above the target at a safe height, then descend onto the hover point.

    Separating travel from descent gives demonstrations a clear structure (height is decided by
    the height, direction by the image) that behaviour cloning learns far more easily than one
    diagonal sweep ending the moment it is within tolerance.
    """

    TRAVEL_CLEARANCE = 0.05  # travel this far above the hover point (m)

    def plan(self, s: dict) -> np.ndarray:
        ee = np.asarray(s["ee_position"])
        goal = np.asarray(s["objects"][s["roles"]["object"]]["position"]) + [0, 0, 0.05]
        if _xy_dist(ee, goal) > 0.02:
            travel_z = max(goal[2] + self.TRAVEL_CLEARANCE, min(ee[2], 0.2))
            return _move(ee, [goal[0], goal[1], travel_z], self.max_step, OPEN)
        return _move(ee, goal, self.max_step, OPEN)


class PickPlaceExpert(ScriptedExpert):
    """Grasp the object from above, carry it at HOVER, lower and release over the destination."""

    def place_point(self, s: dict) -> np.ndarray:
        dest = s["objects"][s["roles"]["destination"]]
        return np.asarray(dest["position"]) + [0, 0, 0.06]

    def placed(self, s: dict) -> bool:
        obj = np.asarray(s["objects"][s["roles"]["object"]]["position"])
        dest = np.asarray(s["objects"][s["roles"]["destination"]]["position"])
        return bool(np.all(np.abs(obj[:2] - dest[:2]) < TRAY_HALF - 0.015) and obj[2] < 0.05)

    def release_ok(self, s: dict, ee: np.ndarray, goal: np.ndarray) -> bool:
        return _xy_dist(ee, goal) < 0.012 and ee[2] < goal[2] + 0.01

    def plan(self, s: dict) -> np.ndarray:
        ee = np.asarray(s["ee_position"])
        name = s["roles"]["object"]
        obj = np.asarray(s["objects"][name]["position"])
        if self.placed(s) and s["holding"] != name:
            return _move(ee, [ee[0], ee[1], HOVER + 0.05], self.max_step, OPEN)  # retreat
        if s["holding"] == name:
            goal = self.place_point(s)
            if self.release_ok(s, ee, goal):
                return np.array([0, 0, 0, OPEN], dtype=np.float32)
            if _xy_dist(ee, goal) > 0.012:
                if ee[2] < HOVER - 0.02:  # lift before travelling
                    return _move(ee, [ee[0], ee[1], HOVER + 0.01], self.max_step, CLOSE)
                return _move(ee, [goal[0], goal[1], max(HOVER, goal[2])], self.max_step, CLOSE)
            return _move(ee, goal, self.max_step, CLOSE)
        grasp_z = obj[2]
        aligned = _xy_dist(ee, obj) < 0.008
        if aligned and ee[2] < grasp_z + 0.012:
            return np.array([0, 0, 0, CLOSE], dtype=np.float32)  # close on the object
        if s["gripper_opening"] < 0.06 and ee[2] < HOVER - 0.02:
            # closed on nothing (missed grasp): open while backing up
            return _move(ee, [ee[0], ee[1], HOVER], self.max_step, OPEN)
        if aligned or (_xy_dist(ee, obj) < 0.02 and ee[2] < HOVER):
            return _move(ee, [obj[0], obj[1], grasp_z], self.max_step, OPEN)  # descend
        if ee[2] < HOVER - 0.03 and _xy_dist(ee, obj) > 0.03:
            return _move(ee, [ee[0], ee[1], HOVER], self.max_step, OPEN)  # up first
        return _move(ee, [obj[0], obj[1], HOVER], self.max_step, OPEN)  # approach


class StackExpert(PickPlaceExpert):
    """PickPlace onto the base cube: align tighter, release just above the base's top."""

    def place_point(self, s: dict) -> np.ndarray:
        base = s["objects"][s["roles"]["destination"]]
        return np.asarray(base["position"]) + [0, 0, 2 * base["half_height"] + 0.006]

    def placed(self, s: dict) -> bool:
        top = np.asarray(s["objects"][s["roles"]["object"]]["position"])
        base = np.asarray(s["objects"][s["roles"]["destination"]]["position"])
        return _xy_dist(top, base) < 0.02 and abs(top[2] - base[2] - 0.04) < 0.008

    def release_ok(self, s: dict, ee: np.ndarray, goal: np.ndarray) -> bool:
        return _xy_dist(ee, goal) < 0.006 and ee[2] < goal[2] + 0.006


class PushExpert(ScriptedExpert):
    """Close the gripper, go behind the object (opposite the zone), push through it."""

    PUSH_Z = 0.018
    TRAVEL_Z = 0.08

    def plan(self, s: dict) -> np.ndarray:
        ee = np.asarray(s["ee_position"])
        obj = np.asarray(s["objects"][s["roles"]["object"]]["position"])
        zone = np.asarray(s["objects"][s["roles"]["destination"]]["position"])
        d = zone[:2] - obj[:2]
        dist = float(np.linalg.norm(d))
        if dist < 0.015:
            return _move(ee, [ee[0], ee[1], HOVER], self.max_step, CLOSE)
        u = d / dist
        rel = ee[:2] - obj[:2]
        along = float(rel @ u)
        lateral = float(rel[0] * u[1] - rel[1] * u[0])
        pre = np.r_[obj[:2] - u * 0.05, self.PUSH_Z]
        if along < -0.025 and abs(lateral) < 0.012 and ee[2] < 0.04:
            # in position behind the object: push toward the zone (slightly past the object)
            tgt = np.r_[obj[:2] + u * min(dist, 0.04), self.PUSH_Z]
            action = _move(ee, tgt, self.max_step, CLOSE)
            # Push at <= 0.35 m/s, slower near the zone: a full-speed (0.5 m/s) shove sends
            # low-friction objects sliding past the zone and off the table.
            speed = float(np.clip(dist / 0.06, 0.3, 0.7))
            largest = float(np.max(np.abs(action[:2])))
            if largest > speed:  # scale, don't clip per axis: keep the push direction
                action[:2] *= speed / largest
            return action
        if _xy_dist(ee, pre) > 0.015:
            if ee[2] < 0.06 and (along > -0.035 or abs(lateral) > 0.02):
                return _move(ee, [ee[0], ee[1], 0.08], self.max_step, CLOSE)  # clear the object
            # Travel at a fixed low height: staying at the start height (~0.35 m) asks the
            # iiwa for an elbow bend beyond its joint limit over objects near its base.
            return _move(ee, [pre[0], pre[1], self.TRAVEL_Z if _xy_dist(ee, pre) > 0.03
                              else pre[2]], self.max_step, CLOSE)
        return _move(ee, pre, self.max_step, CLOSE)


EXPERTS: dict[str, type[ScriptedExpert]] = {
    "reach": ReachExpert, "push": PushExpert, "pick_place": PickPlaceExpert, "stack": StackExpert,
}


class MultiTaskExpert(ScriptedExpert):
    """Dispatches to the expert of the task drawn for this episode."""

    def __init__(self, env, noise_std: float = 0.0, seed: int | None = None) -> None:
        super().__init__(env, noise_std, seed)
        self._experts = {k: cls(env) for k, cls in EXPERTS.items()}

    def plan(self, s: dict) -> np.ndarray:
        return self._experts[s["task"]].plan(s)


def make_expert(env, noise_std: float = 0.0, seed: int | None = None) -> ScriptedExpert:
    """The scripted expert for ``env`` (any vla_sim env, wrapped or not)."""
    base = env.unwrapped
    if len(base.task_names) > 1:
        return MultiTaskExpert(env, noise_std, seed)
    return EXPERTS[base.task_names[0]](env, noise_std, seed)


PolicyFn = Callable[[dict], np.ndarray]
