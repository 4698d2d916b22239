"""The tabletop scene: floor, table, robot and the per-episode objects, with a randomization
sample applied to them.

Objects are named ``<color>_<shape>`` (unique in a scene); the table top is z = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vla_sim.randomization.sample import RandomizationSample
from vla_sim.sim.camera import (FRONT_CAMERA, CameraPose, Lighting, jitter_pose, project, render,
                                wrist_pose)
from vla_sim.sim.client import Simulation
from vla_sim.sim.robots import Robot
from vla_sim.sim.textures import TextureBank, white_texture_file

# Object geometry (m). Cube: half extent; cylinder: radius and height; sphere: radius.
CUBE_HALF = 0.02
CYLINDER_RADIUS, CYLINDER_HEIGHT = 0.02, 0.04
SPHERE_RADIUS = 0.02
OBJECT_MASS = 0.1  # kg
TRAY_HALF, TRAY_WALL = 0.06, 0.03
ZONE_HALF = 0.05
FOOTPRINT = {"cube": 0.03, "cylinder": 0.03, "sphere": 0.03, "tray": 0.085, "zone": 0.07}
MOVABLE_SHAPES = ("cube", "cylinder", "sphere")


def half_height(shape: str) -> float:
    """Height of an object's centre above the table when resting (m)."""
    return {"cube": CUBE_HALF, "cylinder": CYLINDER_HEIGHT / 2, "sphere": SPHERE_RADIUS,
            "tray": 0.0, "zone": 0.0}[shape]


@dataclass(frozen=True)
class RenderSettings:
    image_size: int = 64
    cameras: tuple[str, ...] = ("front",)
    depth: bool = False
    segmentation: bool = False


class Scene:
    """Builds the static scene once and the objects of each episode from a sample."""

    def __init__(self, sim: Simulation, robot: Robot) -> None:
        self.sim = sim
        self.robot = robot
        self.textures = TextureBank(sim.client)
        self.object_names: list[str] = []
        self.camera: CameraPose = FRONT_CAMERA
        self.lighting = Lighting()
        with sim.no_rendering():
            sim.create_primitive("floor", "box", (2.0, 2.0, 0.01), (0.0, 0.0, -0.41),
                                 rgba=(0.35, 0.35, 0.38, 1))
            sim.create_primitive("table", "box", (0.45, 0.55, 0.2), (-0.3, 0.0, -0.2),
                                 rgba=(0.62, 0.55, 0.45, 1))
        self._plain_texture = -1

    def apply(self, sample: RandomizationSample) -> None:
        """Remove last episode's objects, create this episode's, apply appearance and physics."""
        sim = self.sim
        with sim.no_rendering():
            for name in self.object_names:
                sim.remove_body(name)
            self.object_names = []
            for o in sample.objects:
                pos = (o.x, o.y, half_height(o.shape))
                orn = sim.client.getQuaternionFromEuler((0.0, 0.0, o.yaw))
                rgba = (*o.rgb, 1.0)
                if o.shape == "tray":
                    sim.create_tray(o.name, TRAY_HALF, TRAY_WALL, pos, rgba)
                elif o.shape == "zone":
                    sim.create_primitive(o.name, "box", (ZONE_HALF, ZONE_HALF, 0.0005),
                                         (o.x, o.y, 0.0006), orn, rgba=rgba, collision=False)
                else:
                    kind, geom = {"cube": ("box", (CUBE_HALF,) * 3),
                                  "cylinder": ("cylinder", (CYLINDER_RADIUS, CYLINDER_HEIGHT)),
                                  "sphere": ("sphere", (SPHERE_RADIUS,))}[o.shape]
                    sim.create_primitive(o.name, kind, geom, pos, orn,
                                         mass=OBJECT_MASS * o.mass_scale, rgba=rgba)
                    sim.set_dynamics(o.name, lateralFriction=o.friction,
                                     restitution=o.restitution, linearDamping=o.linear_damping,
                                     angularDamping=o.angular_damping, spinningFriction=0.002,
                                     rollingFriction=0.001 if o.shape == "sphere" else 0.0)
                if o.texture >= 0:
                    sim.client.changeVisualShape(sim.body_id(o.name), -1,
                                                 textureUniqueId=self.textures.id(o.texture))
                self.object_names.append(o.name)
            self._set_surface("table", sample.table_texture, sample.table_rgb)
            self._set_surface("floor", sample.floor_texture, (0.35, 0.35, 0.38))
        self.camera = jitter_pose(FRONT_CAMERA, sample.camera_eye_offset,
                                  sample.camera_target_offset, sample.fov_offset)
        self.lighting = Lighting(direction=sample.light_direction, color=sample.light_color,
                                 ambient=sample.ambient, diffuse=sample.diffuse,
                                 specular=sample.specular, shadows=sample.shadows)

    def _set_surface(self, name: str, texture: int, rgb) -> None:
        uid = self.sim.body_id(name)
        if texture >= 0:
            self.sim.client.changeVisualShape(uid, -1, rgbaColor=(1, 1, 1, 1),
                                              textureUniqueId=self.textures.id(texture))
        else:
            # A texture cannot be removed, only replaced: a 1-texel white texture under the colour.
            if self._plain_texture < 0 and len(self.textures):
                self._plain_texture = self.sim.client.loadTexture(str(white_texture_file()))
            if self._plain_texture >= 0:
                self.sim.client.changeVisualShape(uid, -1, textureUniqueId=self._plain_texture)
            self.sim.client.changeVisualShape(uid, -1, rgbaColor=(*rgb, 1.0))

    # -- rendering -----------------------------------------------------------------------------
    def camera_pose(self, camera: str) -> CameraPose:
        """The pose ``camera`` renders from now: the episode's (randomized) front camera, or the
        wrist camera at the end-effector's current position."""
        if camera == "front":
            return self.camera
        if camera == "wrist":
            return wrist_pose(self.robot.ee_position())
        raise ValueError(f"unknown camera {camera!r}; valid cameras: ['front', 'wrist']")

    def render_camera(self, camera: str, size: int, depth: bool = False,
                      segmentation: bool = False) -> dict[str, np.ndarray]:
        return render(self.sim.client, self.camera_pose(camera), self.lighting, size, size,
                      depth, segmentation)

    def project(self, camera: str, points) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> (normalised image coordinates (N, 2), visible (N,)) in what
        ``camera`` renders now (square images; see :func:`vla_sim.sim.camera.project`)."""
        return project(self.camera_pose(camera), points, aspect=1.0)


def yaw_of(quaternion) -> float:
    x, y, z, w = quaternion
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
