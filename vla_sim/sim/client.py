"""One PyBullet client per env: physics stepping, body bookkeeping and primitive shapes.

Everything above this layer names bodies by string; no raw body ids leak into tasks. Units are
metres, kilograms and seconds; positions are world-frame (x, y, z); quaternions are (x, y, z, w).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pybullet as p
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

from vla_sim.utils.quiet import quiet_stdout as _quiet_stdout


@dataclass(frozen=True)
class SimConfig:
    """Physics and control rates. 240 Hz physics is PyBullet's tuned default."""

    physics_hz: int = 240
    control_hz: int = 20
    gui: bool = False

    def __post_init__(self) -> None:
        if self.physics_hz <= 0 or self.control_hz <= 0:
            raise ValueError(f"rates must be positive, got physics_hz={self.physics_hz}, "
                             f"control_hz={self.control_hz}")
        if self.physics_hz % self.control_hz:
            raise ValueError(f"physics_hz ({self.physics_hz}) must be a multiple of control_hz "
                             f"({self.control_hz})")

    @property
    def substeps(self) -> int:
        return self.physics_hz // self.control_hz


class _CachingBulletClient(BulletClient):
    """``BulletClient`` that keeps the ``functools.partial`` it builds for each pybullet function.

    The stock ``__getattr__`` runs ``inspect.isbuiltin`` and builds a new partial on every call
    (~15 us; ~25 calls per control step). Cached partials are dropped on ``disconnect`` so a
    closed client can never reach a newer connection that reuses its id.
    """

    def __getattr__(self, name: str):
        attribute = super().__getattr__(name)
        if name != "disconnect" and isinstance(attribute, functools.partial):
            self.__dict__[name] = attribute
        return attribute

    def disconnect(self) -> None:
        for name in [k for k, v in self.__dict__.items() if isinstance(v, functools.partial)]:
            del self.__dict__[name]
        client, self._client = self._client, -1
        if client >= 0:
            p.disconnect(physicsClientId=client)


class Simulation:
    """Owns a private ``BulletClient`` (DIRECT by default) and the named bodies in it."""

    def __init__(self, config: SimConfig = SimConfig()) -> None:
        self.config = config
        with _quiet_stdout():  # PyBullet's C code prints "argv[0]=" on every connect
            self.client = _CachingBulletClient(connection_mode=p.GUI if config.gui else p.DIRECT)
        self.client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self.client.setTimeStep(1.0 / config.physics_hz)
        self.client.setGravity(0, 0, -9.81)
        self.bodies: dict[str, int] = {}
        self._shape_cache: dict[tuple, int] = {}
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Disconnect the client; safe to call twice."""
        if not self._closed:
            self._closed = True
            try:
                self.client.disconnect()
            except p.error:
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def no_rendering(self) -> Iterator[None]:
        """Disable GUI rendering while building a scene (a no-op cost in DIRECT mode)."""
        if self.config.gui:
            self.client.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 0)
        try:
            yield
        finally:
            if self.config.gui:
                self.client.configureDebugVisualizer(p.COV_ENABLE_RENDERING, 1)

    def step(self) -> None:
        """Advance one control period (``substeps`` physics steps)."""
        for _ in range(self.config.substeps):
            self.client.stepSimulation()

    # -- bodies --------------------------------------------------------------------------------
    def body_id(self, name: str) -> int:
        try:
            return self.bodies[name]
        except KeyError:
            raise KeyError(f"no body named {name!r}; bodies: {sorted(self.bodies)}") from None

    def remove_body(self, name: str) -> None:
        self.client.removeBody(self.bodies.pop(name))

    def load_urdf(self, name: str, path: str, position: Sequence[float],
                  orientation: Sequence[float] = (0, 0, 0, 1), fixed: bool = True,
                  flags: int = 0) -> int:
        uid = self.client.loadURDF(str(path), basePosition=position, baseOrientation=orientation,
                                   useFixedBase=fixed, flags=flags)
        self.bodies[name] = uid
        return uid

    def _shape(self, kind: str, geom: tuple, visual: bool) -> int:
        """Collision/visual shapes are cached: creating one per reset would grow memory."""
        key = (kind, geom, visual)
        if key not in self._shape_cache:
            fn = self.client.createVisualShape if visual else self.client.createCollisionShape
            if kind == "box":
                sid = fn(p.GEOM_BOX, halfExtents=geom)
            elif kind == "sphere":
                sid = fn(p.GEOM_SPHERE, radius=geom[0])
            elif kind == "cylinder":
                if visual:
                    sid = fn(p.GEOM_CYLINDER, radius=geom[0], length=geom[1])
                else:
                    sid = fn(p.GEOM_CYLINDER, radius=geom[0], height=geom[1])
            else:
                raise ValueError(f"unknown primitive {kind!r}; expected box, sphere or cylinder")
            self._shape_cache[key] = sid
        return self._shape_cache[key]

    def create_primitive(self, name: str, kind: str, geom: tuple, position: Sequence[float],
                         orientation: Sequence[float] = (0, 0, 0, 1), mass: float = 0.0,
                         rgba: Sequence[float] = (1, 1, 1, 1), collision: bool = True) -> int:
        """A single-link body. ``geom``: box half extents (x, y, z); sphere (radius,);
        cylinder (radius, height). ``collision=False`` makes a visual-only marker."""
        col = self._shape(kind, tuple(float(g) for g in geom), False) if collision else -1
        vis = self._shape(kind, tuple(float(g) for g in geom), True)
        uid = self.client.createMultiBody(baseMass=mass, baseCollisionShapeIndex=col,
                                          baseVisualShapeIndex=vis, basePosition=position,
                                          baseOrientation=orientation)
        self.client.changeVisualShape(uid, -1, rgbaColor=list(rgba))
        self.bodies[name] = uid
        return uid

    def create_tray(self, name: str, half_size: float, wall_height: float, position: Sequence[float],
                    rgba: Sequence[float]) -> int:
        """An open container: a base plate and four low walls, as one static compound body."""
        t = 0.005  # wall half thickness (m)
        h = wall_height / 2
        key = ("tray", half_size, wall_height)
        if key not in self._shape_cache:
            half_extents = [[half_size, half_size, t], [t, half_size, h], [t, half_size, h],
                            [half_size, t, h], [half_size, t, h]]
            offsets = [[0, 0, t], [half_size - t, 0, h], [-half_size + t, 0, h],
                       [0, half_size - t, h], [0, -half_size + t, h]]
            n = len(half_extents)
            col = self.client.createCollisionShapeArray([p.GEOM_BOX] * n, halfExtents=half_extents,
                                                        collisionFramePositions=offsets)
            vis = self.client.createVisualShapeArray([p.GEOM_BOX] * n, halfExtents=half_extents,
                                                     visualFramePositions=offsets)
            self._shape_cache[key] = (col, vis)  # type: ignore[assignment]
        col, vis = self._shape_cache[key]  # type: ignore[misc]
        uid = self.client.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=col,
                                          baseVisualShapeIndex=vis, basePosition=position)
        self.client.changeVisualShape(uid, -1, rgbaColor=list(rgba))
        self.bodies[name] = uid
        return uid

    # -- state ---------------------------------------------------------------------------------
    def get_position(self, name: str) -> np.ndarray:
        return np.asarray(self.client.getBasePositionAndOrientation(self.body_id(name))[0])

    def get_orientation(self, name: str) -> np.ndarray:
        """Quaternion (x, y, z, w)."""
        return np.asarray(self.client.getBasePositionAndOrientation(self.body_id(name))[1])

    def set_pose(self, name: str, position: Sequence[float],
                 orientation: Sequence[float] = (0, 0, 0, 1)) -> None:
        uid = self.body_id(name)
        self.client.resetBasePositionAndOrientation(uid, position, orientation)
        self.client.resetBaseVelocity(uid, [0, 0, 0], [0, 0, 0])

    def set_dynamics(self, name: str, **kwargs: float) -> None:
        """``changeDynamics`` on the base link (lateralFriction, mass, restitution, ...)."""
        self.client.changeDynamics(self.body_id(name), -1, **kwargs)

    def contact(self, a: str, b: str) -> bool:
        return len(self.client.getContactPoints(self.body_id(a), self.body_id(b))) > 0
