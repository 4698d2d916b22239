"""The sim layer alone: private clients, shapes, robots, cameras, textures."""

from __future__ import annotations

import numpy as np
import pybullet as p
import pytest

from vla_sim.sim.camera import FRONT_CAMERA, Lighting, render, wrist_pose
from vla_sim.sim.client import SimConfig, Simulation
from vla_sim.sim.robots import (
    ROBOTS,
    STATE_DIM,
    WORKSPACE_HIGH,
    WORKSPACE_LOW,
    make_robot,
)
from vla_sim.sim.textures import TextureBank, texture_image


def test_sim_config_validates_rates():
    assert SimConfig().substeps == 12
    with pytest.raises(ValueError, match="multiple"):
        SimConfig(physics_hz=240, control_hz=7)
    with pytest.raises(ValueError, match="positive"):
        SimConfig(control_hz=0)


def test_each_simulation_owns_a_private_client():
    a, b = Simulation(), Simulation()
    assert a.client._client != b.client._client
    a.create_primitive("box", "box", (0.02, 0.02, 0.02), (0, 0, 1), mass=0.1)
    assert b.client.getNumBodies() == 0 and a.client.getNumBodies() == 1
    a.close()
    b.close()
    with pytest.raises(p.error):
        a.client.getNumBodies()  # a closed client cannot reach another connection


def test_shapes_are_cached_and_unknown_bodies_are_named():
    sim = Simulation()
    for i in range(5):
        sim.create_primitive(f"c{i}", "box", (0.02, 0.02, 0.02), (0, 0, 0.1 * i), mass=0.1)
    assert len(sim._shape_cache) == 2  # one collision + one visual shape for all five
    with pytest.raises(KeyError, match="c0"):
        sim.body_id("nope")
    with pytest.raises(ValueError, match="box, sphere or cylinder"):
        sim.create_primitive("x", "cone", (0.1,), (0, 0, 0))
    sim.close()


@pytest.mark.parametrize("name", sorted(ROBOTS))
def test_robot_reaches_targets_in_the_workspace_pointing_down(name):
    sim = Simulation()
    robot = make_robot(name, sim)
    robot.reset()
    state = robot.proprio()
    assert state.shape == (STATE_DIM,) and state.dtype == np.float32
    assert robot.gripper_opening() == pytest.approx(2 * robot.finger_max, abs=1e-6)
    for target in ([-0.2, -0.15, 0.03], [0.05, 0.18, 0.05], [-0.05, 0.0, 0.2]):
        for _ in range(40):  # 2 s of control at 20 Hz
            delta = np.clip((np.asarray(target) - robot.ee_position()) / robot.max_ee_step, -1, 1)
            robot.apply_action(np.r_[delta, 1.0])
            sim.step()
        assert np.linalg.norm(robot.ee_position() - target) < 0.01, (name, target)
        # gripper z axis points at the table
        z_axis = np.asarray(p.getMatrixFromQuaternion(robot.ee_orientation())).reshape(3, 3)[:, 2]
        assert z_axis[2] < -0.99
    # the workspace box clips targets
    for _ in range(60):
        robot.apply_action(np.array([0.0, 0.0, -1.0, -1.0]))
        sim.step()
    assert robot.ee_position()[2] > WORKSPACE_LOW[2] - 0.01
    assert robot.gripper_opening() < 0.01  # closed on nothing
    assert np.all(WORKSPACE_HIGH > WORKSPACE_LOW)
    sim.close()


def test_unknown_robot_lists_valid_names():
    sim = Simulation()
    with pytest.raises(ValueError, match="iiwa.*panda"):
        make_robot("ur5", sim)
    sim.close()


def test_render_shapes_dtypes_and_depth_units():
    sim = Simulation()
    sim.create_primitive("table", "box", (0.45, 0.55, 0.2), (-0.3, 0, -0.2))
    out = render(sim.client, FRONT_CAMERA, Lighting(), 40, 30, depth=True, segmentation=True)
    assert out["rgb"].shape == (30, 40, 3) and out["rgb"].dtype == np.uint8
    assert out["depth"].dtype == np.float32 and out["segmentation"].dtype == np.int32
    assert 0.2 < np.median(out["depth"]) < 1.5
    assert set(np.unique(out["segmentation"])) <= {-1, sim.body_id("table")}
    pose = wrist_pose((0.0, 0.0, 0.1))
    assert pose.eye[2] > pose.target[2]
    sim.close()


def test_texture_bank_is_deterministic_and_loads_each_texture_once():
    assert np.array_equal(texture_image(3), texture_image(3))
    assert not np.array_equal(texture_image(3), texture_image(4))
    with pytest.raises(ValueError, match="texture index"):
        texture_image(99)
    sim = Simulation()
    bank = TextureBank(sim.client)
    ids = [bank.id(i % 4) for i in range(20)]
    assert len(bank) == 4 and ids[:4] == ids[4:8]
    sim.close()
