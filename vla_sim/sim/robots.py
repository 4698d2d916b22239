"""Robot arms behind one interface: end-effector delta control through IK, a parallel gripper,
and proprioception.

Action convention (shared by every robot): ``a[:3]`` in [-1, 1] is an end-effector displacement
in the world frame, scaled by ``max_ee_step`` metres per control step; ``a[3]`` in [-1, 1] is the
gripper command (-1 fully closed .. +1 fully open). The gripper always points down.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pybullet as p
import pybullet_data

from vla_sim.assets import asset_path
from vla_sim.sim.client import Simulation

# Workspace box the end effector is kept inside (world frame, metres). The table top is z = 0.
WORKSPACE_LOW = np.array([-0.35, -0.35, 0.005])
WORKSPACE_HIGH = np.array([0.30, 0.35, 0.40])
STATE_DIM = 22  # ee_pos 3 | ee_quat 4 | gripper opening 1 | joint pos 7 | joint vel 7


class Robot:
    """Base class. Subclasses give the URDF, joint names, rest pose and gripper geometry."""

    name: ClassVar[str]
    arm_joint_names: ClassVar[tuple[str, ...]]
    finger_joint_names: ClassVar[tuple[str, ...]]
    ee_link_name: ClassVar[str]
    rest_pose: ClassVar[tuple[float, ...]]
    finger_max: ClassVar[float]  # opening of one finger joint when fully open (m)
    down_orientation: ClassVar[tuple[float, float, float, float]]
    base_position: ClassVar[tuple[float, float, float]] = (-0.6, 0.0, 0.0)

    def __init__(self, sim: Simulation, detailed: bool = False, max_ee_step: float = 0.025) -> None:
        self.sim = sim
        self.client = sim.client
        self.detailed = detailed
        self.max_ee_step = max_ee_step
        self.uid = sim.load_urdf("robot", str(self.urdf_path(detailed)), self.base_position,
                                 fixed=True, flags=p.URDF_USE_SELF_COLLISION_EXCLUDE_PARENT * 0)
        names = {self.client.getJointInfo(self.uid, j)[1].decode(): j
                 for j in range(self.client.getNumJoints(self.uid))}
        link_names = {self.client.getJointInfo(self.uid, j)[12].decode(): j
                      for j in range(self.client.getNumJoints(self.uid))}
        self.arm_joints = [names[n] for n in self.arm_joint_names]
        self.finger_joints = [names[n] for n in self.finger_joint_names]
        self.ee_link = link_names[self.ee_link_name]
        # IK null-space settings over all movable joints (PyBullet wants one entry per DoF).
        self._movable = [j for j in range(self.client.getNumJoints(self.uid))
                         if self.client.getJointInfo(self.uid, j)[2] != p.JOINT_FIXED]
        info = [self.client.getJointInfo(self.uid, j) for j in self._movable]
        self._ll = [i[8] for i in info]
        self._ul = [i[9] for i in info]
        self._jr = [max(i[9] - i[8], 1e-3) for i in info]
        rest = dict(zip(self.arm_joints, self.rest_pose))
        self._rp = [rest.get(j, self.finger_max) for j in self._movable]
        self._arm_dof_idx = [self._movable.index(j) for j in self.arm_joints]
        self.gripper_target = self.finger_max
        for j in self.arm_joints + self.finger_joints:
            self.client.changeDynamics(self.uid, j, linearDamping=0.0, angularDamping=0.0)

    @classmethod
    def urdf_path(cls, detailed: bool) -> Path:
        raise NotImplementedError

    # -- control -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Rest pose, gripper open, zero velocity."""
        self._set_pose(self.rest_pose, self.finger_max)

    def _set_pose(self, q, finger: float) -> None:
        """Arm joints to ``q`` and each finger to ``finger``, zero velocity, motor targets
        held there."""
        self._set_arm(q)
        for j in self.finger_joints:
            self.client.resetJointState(self.uid, j, finger, 0.0)
        self.gripper_target = finger
        self._command_arm(np.asarray(q))
        self._command_gripper()

    def _set_arm(self, q) -> None:
        for j, qj in zip(self.arm_joints, q):
            self.client.resetJointState(self.uid, j, float(qj), 0.0)

    def apply_action(self, action: np.ndarray) -> None:
        """Set motor targets for one control period from a clipped action in [-1, 1]^4."""
        target = self.ee_position() + action[:3] * self.max_ee_step
        target = np.clip(target, WORKSPACE_LOW, WORKSPACE_HIGH)
        self._command_arm(self.inverse_kinematics(target))
        self.gripper_target = float((action[3] + 1.0) / 2.0 * self.finger_max)
        self._command_gripper()

    def inverse_kinematics(self, position: np.ndarray) -> np.ndarray:
        """Arm joint angles that put the grasp frame at ``position`` pointing down."""
        q = self.client.calculateInverseKinematics(
            self.uid, self.ee_link, position.tolist(), list(self.down_orientation),
            lowerLimits=self._ll, upperLimits=self._ul, jointRanges=self._jr, restPoses=self._rp,
            maxNumIterations=20, residualThreshold=1e-4)
        return np.asarray(q)[self._arm_dof_idx]

    def place(self, position: np.ndarray, opening: float) -> None:
        """Teleport: the grasp frame to ``position`` (clipped to the workspace, pointing down),
        each finger ``opening`` m open (clipped to its stroke), zero velocity, motor targets
        held there. No physics step: the scene around it stays as it was (free frames for
        perception labels, not a reachable state of an episode)."""
        target = np.clip(np.asarray(position, np.float64), WORKSPACE_LOW, WORKSPACE_HIGH)
        q = np.asarray(self.rest_pose, np.float64)
        for _ in range(3):  # IK starts from the current pose: a few resets converge it
            self._set_arm(q)
            q = self.inverse_kinematics(target)
        self._set_pose(q, float(np.clip(opening, 0.0, self.finger_max)))

    def _command_arm(self, q: np.ndarray) -> None:
        self.client.setJointMotorControlArray(
            self.uid, self.arm_joints, p.POSITION_CONTROL, targetPositions=q.tolist(),
            forces=[200.0] * len(self.arm_joints), positionGains=[0.3] * len(self.arm_joints))

    def _command_gripper(self) -> None:
        self.client.setJointMotorControlArray(
            self.uid, self.finger_joints, p.POSITION_CONTROL,
            targetPositions=[self.gripper_target] * len(self.finger_joints),
            forces=[40.0] * len(self.finger_joints))

    # -- proprioception ------------------------------------------------------------------------
    def ee_position(self) -> np.ndarray:
        """Grasp-frame position (m, world frame): between the fingertips."""
        return np.asarray(self.client.getLinkState(self.uid, self.ee_link,
                                                   computeForwardKinematics=True)[4])

    def ee_orientation(self) -> np.ndarray:
        return np.asarray(self.client.getLinkState(self.uid, self.ee_link,
                                                   computeForwardKinematics=True)[5])

    def gripper_opening(self) -> float:
        """Distance between the fingers (m)."""
        return float(sum(s[0] for s in self.client.getJointStates(self.uid, self.finger_joints)))

    def joint_states(self) -> tuple[np.ndarray, np.ndarray]:
        states = self.client.getJointStates(self.uid, self.arm_joints)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def proprio(self) -> np.ndarray:
        """float32 (22,): ee_pos | ee_quat (xyzw) | gripper opening | joint pos | joint vel."""
        state = self.client.getLinkState(self.uid, self.ee_link, computeForwardKinematics=True)
        qpos, qvel = self.joint_states()
        return np.concatenate([state[4], state[5], [self.gripper_opening()], qpos, qvel]
                              ).astype(np.float32)

    def finger_links(self) -> list[int]:
        return list(self.finger_joints)


class Panda(Robot):
    """Franka Emika Panda, 7 DoF, with its parallel gripper (8 cm stroke)."""

    name = "panda"
    arm_joint_names = tuple(f"panda_joint{i}" for i in range(1, 8))
    finger_joint_names = ("panda_finger_joint1", "panda_finger_joint2")
    ee_link_name = "panda_grasptarget"
    rest_pose = (0.0, -0.2, 0.0, -2.3, 0.0, 2.1, 0.785)
    finger_max = 0.04
    down_orientation = (1.0, 0.0, 0.0, 0.0)  # grasp frame z axis pointing at the table

    @classmethod
    def urdf_path(cls, detailed: bool) -> Path:
        if detailed:
            return Path(pybullet_data.getDataPath()) / "franka_panda" / "panda.urdf"
        return asset_path("robots", "panda", "panda_lowpoly.urdf")


class Iiwa(Robot):
    """KUKA LBR iiwa 14, 7 DoF, with a simple parallel-jaw gripper (9 cm stroke)."""

    name = "iiwa"
    arm_joint_names = tuple(f"lbr_iiwa_joint_{i}" for i in range(1, 8))
    finger_joint_names = ("finger_left_joint", "finger_right_joint")
    ee_link_name = "grasptarget"
    rest_pose = (0.0, 0.45, 0.0, -1.6, 0.0, 1.1, 0.0)
    finger_max = 0.045
    # Gripper down with the last joint near 0: (1, 0, 0, 0) needs joint 7 at about -pi, next to
    # its +-3.05 rad limit, which made the far -y corner of the object region unreachable.
    down_orientation = (0.0, 1.0, 0.0, 0.0)
    # 4 cm further back than the Panda: at -0.60 the elbow (joint 4, +-120 deg) cannot fold
    # enough to reach objects near the base with the gripper pointing down.
    base_position = (-0.64, 0.0, 0.0)

    @classmethod
    def urdf_path(cls, detailed: bool) -> Path:
        low = asset_path("robots", "iiwa", "iiwa_gripper.urdf")
        if not detailed:
            return low
        return _detailed_iiwa_urdf(low)


def _detailed_iiwa_urdf(lowpoly: Path) -> Path:
    """Swap the cylinder visuals for pybullet_data's full iiwa meshes (for pretty videos)."""
    mesh_dir = Path(pybullet_data.getDataPath()) / "kuka_iiwa" / "meshes"
    text = lowpoly.read_text()

    def swap(match: re.Match) -> str:
        i = match.group(1)
        return (f'<link name="lbr_iiwa_link_{i}">{match.group(2)}<visual><origin rpy="0 0 0" '
                f'xyz="0 0 0"/><geometry><mesh filename="{mesh_dir}/link_{i}.obj"/></geometry>'
                f'</visual>')

    text = re.sub(r'<link name="lbr_iiwa_link_(\d)">(.*?)<visual>.*?</visual>', swap, text,
                  flags=re.S)
    out = Path(tempfile.gettempdir()) / "vla_sim_assets" / "iiwa_gripper_detailed.urdf"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists() or out.read_text() != text:
        out.write_text(text)
    return out


ROBOTS: dict[str, type[Robot]] = {"panda": Panda, "iiwa": Iiwa}


def make_robot(name: str, sim: Simulation, detailed: bool = False) -> Robot:
    """Build a robot by name; unknown names list the valid ones."""
    try:
        cls = ROBOTS[name]
    except KeyError:
        raise ValueError(f"unknown robot {name!r}; valid robots: {sorted(ROBOTS)}") from None
    return cls(sim, detailed=detailed)
