"""Throughput measurements: the env against a raw PyBullet loop doing the same work.

``raw_pybullet_steps_per_s`` is the floor the env is measured against: the same robot URDF, the
same objects, IK through ``calculateInverseKinematics``, ``substeps`` physics steps and one
TinyRenderer frame per control step, a proprioception read and the task objects' poses, with no
Python layers on top. ``env_steps_per_s`` times ``env.step`` on the registered env. Both time
control steps only (resets are excluded) and use the same seeded random actions, so their ratio
is the env's overhead. ``compare`` interleaves the two in blocks so a busy shared CPU slows both
alike (the best block of each counts).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pybullet as p
import pybullet_data

# Objects each task puts on the table (task objects + containers/zones; no distractors).
TASK_OBJECTS: dict[str, tuple[str, ...]] = {
    "reach": ("cube", "cube", "cube"),
    "push": ("cube", "cube", "zone", "zone"),
    "pick_place": ("cube", "cube", "tray", "tray"),
    "stack": ("cube", "cube", "cube"),
}
TASK_IDS = {"reach": "vla_sim/Reach-v0", "push": "vla_sim/Push-v0",
            "pick_place": "vla_sim/PickPlace-v0", "stack": "vla_sim/Stack-v0"}


def _actions(n: int, seed: int = 0) -> np.ndarray:
    """Seeded random actions, smoothed so the arm wanders instead of jittering in place."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (n, 4))
    for i in range(1, n):
        a[i, :3] = 0.8 * a[i - 1, :3] + 0.2 * a[i, :3]
    return a.astype(np.float32)


class RawLoop:
    """The minimal PyBullet program for one control step of a tabletop task (no env layers)."""

    def __init__(self, robot: str = "panda", task: str = "pick_place", image_size: int = 64,
                 detailed_meshes: bool = False, substeps: int = 12, physics_hz: int = 240) -> None:
        from vla_sim.sim import scene as sc
        from vla_sim.sim.camera import FRONT_CAMERA, Lighting
        from vla_sim.sim.robots import ROBOTS, WORKSPACE_HIGH, WORKSPACE_LOW

        cls = ROBOTS[robot]
        self.cid = cid = p.connect(p.DIRECT)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=cid)
        p.setTimeStep(1.0 / physics_hz, physicsClientId=cid)
        p.setGravity(0, 0, -9.81, physicsClientId=cid)
        box = lambda he, pos, mass=0.0: p.createMultiBody(  # noqa: E731
            mass, p.createCollisionShape(p.GEOM_BOX, halfExtents=he, physicsClientId=cid),
            p.createVisualShape(p.GEOM_BOX, halfExtents=he, physicsClientId=cid), pos,
            physicsClientId=cid)
        box((2.0, 2.0, 0.01), (0, 0, -0.41))
        box((0.45, 0.55, 0.2), (-0.3, 0, -0.2))
        self.uid = p.loadURDF(str(cls.urdf_path(detailed_meshes)), cls.base_position,
                              useFixedBase=True, physicsClientId=cid)
        joints = {p.getJointInfo(self.uid, j, physicsClientId=cid)[1].decode(): j
                  for j in range(p.getNumJoints(self.uid, physicsClientId=cid))}
        links = {p.getJointInfo(self.uid, j, physicsClientId=cid)[12].decode(): j
                 for j in range(p.getNumJoints(self.uid, physicsClientId=cid))}
        self.arm = [joints[n] for n in cls.arm_joint_names]
        self.fingers = [joints[n] for n in cls.finger_joint_names]
        self.ee = links[cls.ee_link_name]
        movable = [j for j in range(p.getNumJoints(self.uid, physicsClientId=cid))
                   if p.getJointInfo(self.uid, j, physicsClientId=cid)[2] != p.JOINT_FIXED]
        info = [p.getJointInfo(self.uid, j, physicsClientId=cid) for j in movable]
        self.ll, self.ul = [i[8] for i in info], [i[9] for i in info]
        self.jr = [max(i[9] - i[8], 1e-3) for i in info]
        rest = dict(zip(self.arm, cls.rest_pose))
        self.rp = [rest.get(j, cls.finger_max) for j in movable]
        self.dof = [movable.index(j) for j in self.arm]
        for j, q in zip(self.arm, cls.rest_pose):
            p.resetJointState(self.uid, j, q, physicsClientId=cid)
        for j in self.fingers:
            p.resetJointState(self.uid, j, cls.finger_max, physicsClientId=cid)
        self.down, self.finger_max = list(cls.down_orientation), cls.finger_max
        self.low, self.high = WORKSPACE_LOW, WORKSPACE_HIGH

        # Task objects on a row, built like the scene builds them.
        self.objects = []
        for k, shape in enumerate(TASK_OBJECTS[task]):
            xy = (-0.2 + 0.09 * k, -0.15 + 0.1 * k)
            if shape == "cube":
                he = (sc.CUBE_HALF,) * 3
                uid = p.createMultiBody(
                    sc.OBJECT_MASS, p.createCollisionShape(p.GEOM_BOX, halfExtents=he,
                                                           physicsClientId=cid),
                    p.createVisualShape(p.GEOM_BOX, halfExtents=he, physicsClientId=cid),
                    (*xy, sc.CUBE_HALF), physicsClientId=cid)
            elif shape == "zone":
                he = (sc.ZONE_HALF, sc.ZONE_HALF, 0.0005)
                uid = p.createMultiBody(0, -1, p.createVisualShape(
                    p.GEOM_BOX, halfExtents=he, physicsClientId=cid), (*xy, 0.0006),
                    physicsClientId=cid)
            else:  # tray: base plate and four walls
                h, t, hs = sc.TRAY_WALL / 2, 0.005, sc.TRAY_HALF
                he = [[hs, hs, t], [t, hs, h], [t, hs, h], [hs, t, h], [hs, t, h]]
                off = [[0, 0, t], [hs - t, 0, h], [-hs + t, 0, h], [0, hs - t, h], [0, -hs + t, h]]
                uid = p.createMultiBody(
                    0, p.createCollisionShapeArray([p.GEOM_BOX] * 5, halfExtents=he,
                                                   collisionFramePositions=off,
                                                   physicsClientId=cid),
                    p.createVisualShapeArray([p.GEOM_BOX] * 5, halfExtents=he,
                                             visualFramePositions=off, physicsClientId=cid),
                    (*xy, 0.0), physicsClientId=cid)
            self.objects.append(uid)
        cam, light = FRONT_CAMERA, Lighting()
        self.view = p.computeViewMatrix(cam.eye, cam.target, cam.up)
        self.proj = p.computeProjectionMatrixFOV(cam.fov, 1.0, cam.near, cam.far)
        self.light = light
        self.size, self.substeps = image_size, substeps

    def step(self, a: np.ndarray) -> None:
        cid, uid = self.cid, self.uid
        ee = p.getLinkState(uid, self.ee, computeForwardKinematics=True, physicsClientId=cid)[4]
        target = np.clip(np.add(ee, a[:3] * 0.025), self.low, self.high)
        q = p.calculateInverseKinematics(
            uid, self.ee, target.tolist(), self.down, lowerLimits=self.ll, upperLimits=self.ul,
            jointRanges=self.jr, restPoses=self.rp, maxNumIterations=20, residualThreshold=1e-4,
            physicsClientId=cid)
        p.setJointMotorControlArray(uid, self.arm, p.POSITION_CONTROL,
                                    targetPositions=[q[i] for i in self.dof],
                                    forces=[200.0] * 7, positionGains=[0.3] * 7,
                                    physicsClientId=cid)
        grip = float((a[3] + 1) / 2 * self.finger_max)
        p.setJointMotorControlArray(uid, self.fingers, p.POSITION_CONTROL,
                                    targetPositions=[grip, grip], forces=[40.0, 40.0],
                                    physicsClientId=cid)
        for _ in range(self.substeps):
            p.stepSimulation(physicsClientId=cid)
        lt = self.light
        img = p.getCameraImage(self.size, self.size, self.view, self.proj,
                               renderer=p.ER_TINY_RENDERER, flags=p.ER_NO_SEGMENTATION_MASK,
                               lightDirection=list(lt.direction), lightColor=list(lt.color),
                               lightAmbientCoeff=lt.ambient, lightDiffuseCoeff=lt.diffuse,
                               lightSpecularCoeff=lt.specular, shadow=0, physicsClientId=cid)[2]
        np.asarray(img, np.uint8).reshape(self.size, self.size, 4)[:, :, :3].copy()
        # proprioception and the task objects' poses (what any env must read per step)
        p.getLinkState(uid, self.ee, computeForwardKinematics=True, physicsClientId=cid)
        p.getJointStates(uid, self.arm + self.fingers, physicsClientId=cid)
        for o in self.objects:
            p.getBasePositionAndOrientation(o, physicsClientId=cid)

    def close(self) -> None:
        p.disconnect(physicsClientId=self.cid)


def _time_block(step, actions: np.ndarray) -> float:
    start = time.perf_counter()
    for a in actions:
        step(a)
    return time.perf_counter() - start


def raw_pybullet_steps_per_s(robot: str = "panda", task: str = "pick_place", image_size: int = 64,
                             steps: int = 200, detailed_meshes: bool = False,
                             seed: int = 0) -> float:
    """Control steps per second of the raw PyBullet loop (see :class:`RawLoop`)."""
    loop = RawLoop(robot, task, image_size, detailed_meshes)
    try:
        return steps / _time_block(loop.step, _actions(steps, seed))
    finally:
        loop.close()


class _EnvStepper:
    """``env.step`` with a reset (untimed) whenever an episode ends."""

    def __init__(self, env_id: str, robot: str, image_size: int, randomization,
                 detailed_meshes: bool) -> None:
        import gymnasium as gym

        import vla_sim  # noqa: F401  (registers the ids)

        self.env = gym.make(env_id, robot=robot, image_size=image_size,
                            randomization=randomization, detailed_meshes=detailed_meshes)
        self.episode = 0
        self.env.reset(seed=self.episode)
        self.reset_time = 0.0
        self.resets = 0

    def step(self, a: np.ndarray) -> None:
        _, _, terminated, truncated, _ = self.env.step(a)
        if terminated or truncated:
            self.episode += 1
            start = time.perf_counter()
            self.env.reset(seed=self.episode)
            self.reset_time += time.perf_counter() - start
            self.resets += 1


def env_steps_per_s(env_id: str = "vla_sim/PickPlace-v0", robot: str = "panda",
                    image_size: int = 64, steps: int = 200, randomization="none",
                    detailed_meshes: bool = False, seed: int = 0) -> float:
    """Control steps per second of ``env.step`` (resets excluded)."""
    stepper = _EnvStepper(env_id, robot, image_size, randomization, detailed_meshes)
    try:
        actions = _actions(steps, seed)
        start = time.perf_counter()
        stepper.step(actions[0])
        for a in actions[1:]:
            stepper.step(a)
        return steps / (time.perf_counter() - start - stepper.reset_time)
    finally:
        stepper.env.close()


@dataclass
class Comparison:
    task: str
    robot: str
    detailed_meshes: bool
    env_steps_per_s: float
    raw_steps_per_s: float

    @property
    def ratio(self) -> float:
        return self.env_steps_per_s / self.raw_steps_per_s


def compare(task: str = "pick_place", robot: str = "panda", image_size: int = 64,
            steps: int = 100, blocks: int = 5, detailed_meshes: bool = False,
            randomization="none") -> Comparison:
    """Env vs raw loop in one run: alternating blocks of ``steps``, best block of each."""
    loop = RawLoop(robot, task, image_size, detailed_meshes)
    stepper = _EnvStepper(TASK_IDS[task], robot, image_size, randomization, detailed_meshes)
    actions = _actions(steps * blocks)
    best_env = best_raw = float("inf")
    try:
        for b in range(blocks):
            chunk = actions[b * steps:(b + 1) * steps]
            best_raw = min(best_raw, _time_block(loop.step, chunk))
            before = stepper.reset_time
            t = _time_block(stepper.step, chunk) - (stepper.reset_time - before)
            best_env = min(best_env, t)
    finally:
        loop.close()
        stepper.env.close()
    return Comparison(task, robot, detailed_meshes, steps / best_env, steps / best_raw)
