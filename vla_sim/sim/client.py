"""One PyBullet client per env: physics stepping, body bookkeeping and primitive shapes.

Everything above this layer names bodies by string; no raw body ids leak into tasks. Units are
metres, kilograms and seconds; positions are world-frame (x, y, z); quaternions are (x, y, z, w).

Primitive bodies are pooled, not destroyed: PyBullet never frees ~0.9 KB of every removed
multibody (~3 KB for a tray), so removing and re-creating each episode's objects grew memory by
~3 MB per 1,000 Reach resets (~9 MB at PickPlace ``high``). :meth:`Simulation.remove_body` parks
a primitive out of sight as a static body and :meth:`Simulation.create_primitive` /
:meth:`Simulation.create_tray` hand a parked body of the same shape back, restored to what a new
one would be (pose, mass, fresh broadphase proxy, colour, no texture, default dynamics).
Contact pairs are processed in a deterministic order, so an episode does not depend on the
episodes (and parked bodies) before it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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


# Parked primitives wait below the floor, beyond every camera's far plane (3 m), 0.5 m apart;
# all of them are static, so they never collide with each other or the static scene.
PARK_ORIGIN = (0.0, 0.0, -20.0)
PARK_SPACING = 0.5
# btBroadphaseProxy filters PyBullet gives a new multibody base (see URDF2Bullet.cpp).
_STATIC_GROUP, _STATIC_MASK = 2, -1 ^ 2
# changeDynamics keys a pooled body can be restored from: the rest are refused for pooled bodies
# (the body is then really removed). Multibody damping defaults are btMultiBody's 0.04f.
_RESTORABLE = ("mass", "lateralFriction", "spinningFriction", "rollingFriction", "restitution",
               "linearDamping", "angularDamping")
_DEFAULT_DAMPING = float(np.float32(0.04))


def pose_as_created(position: Sequence[float],
                    orientation: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The base pose ``createMultiBody`` stores for ``(position, orientation)``.

    ``createMultiBody`` turns the quaternion into a rotation matrix, multiplies by the identity
    inertial frame and turns it back (which can move the last bits), while
    ``resetBasePositionAndOrientation`` stores the pose as given. A reused body is placed at
    this pose so it is bit for bit where a new one would be: the same double operations in the
    same order as btMatrix3x3::setRotation, btTransform::operator* and btMatrix3x3::getRotation.
    """
    x, y, z, w = (float(v) for v in orientation)
    d = x * x + y * y + z * z + w * w
    s = 2.0 / d
    xs, ys, zs = x * s, y * s, z * s
    wx, wy, wz = w * xs, w * ys, w * zs
    xx, xy, xz = x * xs, x * ys, x * zs
    yy, yz, zz = y * ys, y * zs, z * zs
    r = ((1.0 - (yy + zz), xy - wz, xz + wy),
         (xy + wz, 1.0 - (xx + zz), yz - wx),
         (xz - wy, yz + wx, 1.0 - (xx + yy)))
    # rotation @ identity, element by element as Bullet sums it (keeps the signs of zeros)
    m = [[row[0] * (1.0 if j == 0 else 0.0) + row[1] * (1.0 if j == 1 else 0.0)
          + row[2] * (1.0 if j == 2 else 0.0) for j in range(3)] for row in r]
    pos = tuple(0.0 * row[0] + 0.0 * row[1] + 0.0 * row[2] + float(v)
                for row, v in zip(r, position))
    trace = m[0][0] + m[1][1] + m[2][2]
    q = [0.0, 0.0, 0.0, 0.0]
    if trace > 0.0:
        t = math.sqrt(trace + 1.0)
        q[3] = t * 0.5
        t = 0.5 / t
        q[0] = (m[2][1] - m[1][2]) * t
        q[1] = (m[0][2] - m[2][0]) * t
        q[2] = (m[1][0] - m[0][1]) * t
    else:
        i = (2 if m[1][1] < m[2][2] else 1) if m[0][0] < m[1][1] else (2 if m[0][0] < m[2][2] else 0)
        j, k = (i + 1) % 3, (i + 2) % 3
        t = math.sqrt(m[i][i] - m[j][j] - m[k][k] + 1.0)
        q[i] = t * 0.5
        t = 0.5 / t
        q[3] = (m[k][j] - m[j][k]) * t
        q[j] = (m[j][i] + m[i][j]) * t
        q[k] = (m[k][i] + m[i][k]) * t
    return pos, tuple(q)


class Simulation:
    """Owns a private ``BulletClient`` (DIRECT by default) and the named bodies in it."""

    def __init__(self, config: SimConfig = SimConfig()) -> None:
        self.config = config
        with _quiet_stdout():  # PyBullet's C code prints "argv[0]=" on every connect
            self.client = _CachingBulletClient(connection_mode=p.GUI if config.gui else p.DIRECT)
        self.client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self.client.setTimeStep(1.0 / config.physics_hz)
        self.client.setGravity(0, 0, -9.81)
        # Contact pairs in a fixed order (sorted by broadphase proxy), not in the order the
        # broadphase tree - shaped by every body ever added, moved or removed - reports them:
        # without it an episode's contact-rich steps depended on the episodes before it.
        self.client.setPhysicsEngineParameter(deterministicOverlappingPairs=1)
        self.bodies: dict[str, int] = {}
        self._shape_cache: dict[tuple, int] = {}
        # body pool (see the module docstring): pool key and parking slot of every poolable
        # body, the parked bodies per key, dynamics defaults per key, dynamics changed per body
        self._pool_key: dict[int, tuple] = {}
        self._slot: dict[int, int] = {}
        self._parked: dict[tuple, list[int]] = {}
        self._defaults: dict[tuple, dict[str, float]] = {}
        self._changed: dict[int, set[str]] = {}
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
        """Remove ``name`` from the scene. Primitives and trays are parked for reuse (PyBullet
        leaks part of every removed body); other bodies (URDFs) are removed."""
        uid = self.bodies.pop(name)
        key = self._pool_key.get(uid)
        if key is None:
            self._changed.pop(uid, None)
            self.client.removeBody(uid)
            return
        slot = self._slot[uid]
        park = (PARK_ORIGIN[0] + PARK_SPACING * slot, PARK_ORIGIN[1], PARK_ORIGIN[2])
        # Zero velocity, then static: no gravity, no contacts; the mass switch (or the filter
        # call for static bodies) rebuilds the broadphase proxy, dropping every contact pair
        # as removeBody would.
        self.client.resetBasePositionAndOrientation(uid, park, (0, 0, 0, 1))
        self._refresh(uid, key, 0.0)
        self._parked.setdefault(key, []).append(uid)

    @property
    def parked(self) -> int:
        """Number of pooled bodies waiting, parked, for reuse."""
        return sum(len(v) for v in self._parked.values())

    def _refresh(self, uid: int, key: tuple, mass: float) -> None:
        """Give a pooled body ``mass`` (0: static) and a new broadphase proxy."""
        dynamic, collision = key[-1], key[-2]
        if dynamic:
            # 0 <-> >0 switches PyBullet between fixed and free base, removing and re-adding the
            # collider: a new proxy, appended after the bodies made before it, like a new body.
            self.client.changeDynamics(uid, -1, mass=mass)
        elif collision:
            self.client.setCollisionFilterGroupMask(uid, -1, _STATIC_GROUP, _STATIC_MASK)

    def _reuse(self, key: tuple, name: str, position: Sequence[float],
               orientation: Sequence[float], mass: float, rgba: Sequence[float]) -> int | None:
        """A parked body for ``key``, restored and placed, or ``None`` when none is parked.
        The lowest id goes first, so the same pool state always gives the same ids."""
        free = self._parked.get(key)
        if not free:
            return None
        uid = min(free)
        free.remove(uid)
        self.client.resetBasePositionAndOrientation(uid, *pose_as_created(position, orientation))
        self._refresh(uid, key, mass)
        changed = self._changed.pop(uid, set()) - {"mass"}
        if changed:
            self.client.changeDynamics(uid, -1, **{k: self._defaults[key][k] for k in changed})
        self.client.changeVisualShape(uid, -1, textureUniqueId=-1)
        self.client.changeVisualShape(uid, -1, rgbaColor=list(rgba))
        self.bodies[name] = uid
        return uid

    def _register(self, uid: int, key: tuple) -> None:
        """Make a new body poolable and note the dynamics defaults of its kind."""
        self._slot[uid] = len(self._slot)
        self._pool_key[uid] = key
        if key not in self._defaults:
            info = self.client.getDynamicsInfo(uid, -1)
            self._defaults[key] = {"lateralFriction": info[1], "restitution": info[5],
                                   "rollingFriction": info[6], "spinningFriction": info[7],
                                   "linearDamping": _DEFAULT_DAMPING,
                                   "angularDamping": _DEFAULT_DAMPING}

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
        cylinder (radius, height). ``collision=False`` makes a visual-only marker. A parked body
        of the same shape is reused when there is one (see :meth:`remove_body`)."""
        geom = tuple(float(g) for g in geom)
        col = self._shape(kind, geom, False) if collision else -1
        vis = self._shape(kind, geom, True)
        # A dynamic body needs a collider to be parked (made static); visual-only ones are static.
        key = ("primitive", kind, geom, collision, mass > 0) if collision or mass == 0 else None
        if key is not None:
            uid = self._reuse(key, name, position, orientation, mass, rgba)
            if uid is not None:
                return uid
        uid = self.client.createMultiBody(baseMass=mass, baseCollisionShapeIndex=col,
                                          baseVisualShapeIndex=vis, basePosition=position,
                                          baseOrientation=orientation)
        self.client.changeVisualShape(uid, -1, rgbaColor=list(rgba))
        self.bodies[name] = uid
        if key is not None:
            self._register(uid, key)
        return uid

    def create_tray(self, name: str, half_size: float, wall_height: float, position: Sequence[float],
                    rgba: Sequence[float]) -> int:
        """An open container: a base plate and four low walls, as one static compound body."""
        t = 0.005  # wall half thickness (m)
        h = wall_height / 2
        pool_key = ("tray", float(half_size), float(wall_height), True, False)
        uid = self._reuse(pool_key, name, position, (0, 0, 0, 1), 0.0, rgba)
        if uid is not None:
            return uid
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
        self._register(uid, pool_key)
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

    def set_dynamics(self, name: str, **kwargs: Any) -> None:
        """``changeDynamics`` on the base link (lateralFriction, mass, restitution, ...)."""
        uid = self.body_id(name)
        if uid in self._pool_key:
            dynamic = self._pool_key[uid][-1]
            if set(kwargs) - set(_RESTORABLE) or ("mass" in kwargs
                                                   and (kwargs["mass"] > 0) != dynamic):
                # cannot be undone exactly on reuse, or switches static/dynamic: not pooled
                self._pool_key.pop(uid)
            else:
                self._changed.setdefault(uid, set()).update(kwargs)
        self.client.changeDynamics(uid, -1, **kwargs)

    def contact(self, a: str, b: str) -> bool:
        return len(self.client.getContactPoints(self.body_id(a), self.body_id(b))) > 0
