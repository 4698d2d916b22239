"""Draw a :class:`RandomizationSample` from ranges and a seeded generator.

Every draw comes from the generator passed in (handed down from ``env.reset(seed=...)``), in a
fixed order, so the same seed gives the same sample. Factors that are switched off take their
nominal value without consuming randomness differently for the others: each factor draws from its
own child generator, so switching one factor on changes that factor and nothing else.
"""

from __future__ import annotations

import math

import numpy as np

from vla_sim.randomization.colors import COLOR_NAMES, SHAPES, nominal_rgb, sample_rgb
from vla_sim.randomization.config import RandomizationConfig
from vla_sim.randomization.sample import ObjectSample, Placement, RandomizationSample

# Where objects may stand (world frame, m): reachable by both arms, inside the camera view.
REGION_LOW = np.array([-0.24, -0.22])
REGION_HIGH = np.array([0.08, 0.22])
N_TEXTURES = 16  # size of the procedural texture bank (see vla_sim.sim.textures)
NOMINAL_LIGHT_DIRECTION = (0.4, -0.3, 1.0)
NOMINAL_TABLE_RGB = (0.62, 0.55, 0.45)
NOMINAL_FRICTION = 1.0
NOMINAL_LINEAR_DAMPING = 0.04
NOMINAL_ANGULAR_DAMPING = 0.04
DISTRACTOR_RADIUS = 0.03
_CANONICAL_SEED = 20260101  # fixed layout used when poses are not randomized
_FACTORS = ("lighting", "textures", "colors", "poses", "camera", "physics", "distractors")


class LayoutError(RuntimeError):
    """The requested items do not fit in the region without overlapping."""


def sample_randomization(config: RandomizationConfig, items: list[Placement],
                         rng: np.random.Generator,
                         exclude_pairs: frozenset = frozenset()) -> RandomizationSample:
    """One draw for a scene holding ``items`` (task objects, containers, zones).

    Distractors (up to ``config.distractors``) get a colour-shape pair used by no item and not
    in ``exclude_pairs`` (the env passes the held-out combinations for the train split, so
    training never even shows them).
    """
    # One independent child stream per factor: turning a factor on never shifts the others.
    streams = dict(zip(_FACTORS, rng.spawn(len(_FACTORS))))
    c = config

    # lighting
    g = streams["lighting"]
    if c.lighting:
        direction = tuple((np.array(NOMINAL_LIGHT_DIRECTION)
                           + g.uniform(-1, 1, 3) * c.light_direction_jitter).tolist())
        light_color = tuple((1.0 - g.uniform(0, 1, 3) * c.light_color_jitter).tolist())
        ambient = 0.6 + g.uniform(-1, 1) * c.ambient_jitter
        diffuse = 0.4 + g.uniform(-1, 1) * c.diffuse_jitter
        specular = 0.05 + g.uniform(0, 1) * c.specular_jitter
        shadows = bool(g.uniform() < c.shadow_prob)
    else:
        direction, light_color = NOMINAL_LIGHT_DIRECTION, (1.0, 1.0, 1.0)
        ambient, diffuse, specular, shadows = 0.6, 0.4, 0.05, False

    # distractors: identities first, so that every later factor knows the full item list
    g = streams["distractors"]
    used = {(it.color, it.shape) for it in items} | set(exclude_pairs)
    distractors: list[Placement] = []
    if c.distractors > 0:
        n = int(g.integers(0, c.distractors + 1))
        free = [(col, sh) for col in COLOR_NAMES for sh in SHAPES if (col, sh) not in used]
        for k in g.permutation(len(free))[:n]:
            col, sh = free[int(k)]
            distractors.append(Placement(f"distractor_{len(distractors)}_{col}_{sh}", col, sh,
                                         DISTRACTOR_RADIUS))
    all_items = list(items) + distractors

    # textures
    g = streams["textures"]
    table_texture = floor_texture = -1
    table_rgb = NOMINAL_TABLE_RGB
    obj_textures = [-1] * len(all_items)
    if c.textures:
        if g.uniform() < c.texture_prob:
            table_texture = int(g.integers(0, N_TEXTURES))
        if g.uniform() < c.texture_prob:
            floor_texture = int(g.integers(0, N_TEXTURES))
        scale = 1.0 + g.uniform(-1, 1) * c.table_color_jitter
        table_rgb = tuple(np.clip(np.array(NOMINAL_TABLE_RGB) * scale, 0, 1).tolist())
        if c.object_textures:
            # Only distractors get textures, so named objects keep their colour name.
            for i, it in enumerate(all_items):
                if it in distractors and g.uniform() < 0.5:
                    obj_textures[i] = int(g.integers(0, N_TEXTURES))

    # colours
    g = streams["colors"]
    rgbs = [sample_rgb(it.color, g, c.color_jitter) if c.colors else nominal_rgb(it.color)
            for it in all_items]

    # poses
    positions, yaws = _sample_layout(all_items, c, streams["poses"])

    # camera
    g = streams["camera"]
    if c.camera:
        eye = tuple((g.uniform(-1, 1, 3) * c.camera_eye_jitter).tolist())
        target = tuple((g.uniform(-1, 1, 3) * c.camera_target_jitter).tolist())
        fov = float(g.uniform(-1, 1) * c.fov_jitter)
    else:
        eye, target, fov = (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.0

    # physics
    g = streams["physics"]
    objects = []
    for i, it in enumerate(all_items):
        if c.physics and it.movable:
            friction = NOMINAL_FRICTION * (1 + g.uniform(-1, 1) * c.friction_jitter)
            mass_scale = 1 + g.uniform(-1, 1) * c.mass_jitter
            restitution = g.uniform(0, c.restitution_max)
            lin_d = NOMINAL_LINEAR_DAMPING + g.uniform(0, c.damping_max)
            ang_d = NOMINAL_ANGULAR_DAMPING + g.uniform(0, c.damping_max)
        else:
            friction, mass_scale, restitution = NOMINAL_FRICTION, 1.0, 0.0
            lin_d, ang_d = NOMINAL_LINEAR_DAMPING, NOMINAL_ANGULAR_DAMPING
        objects.append(ObjectSample(
            name=it.name, color=it.color, shape=it.shape, rgb=tuple(float(v) for v in rgbs[i]),
            texture=obj_textures[i], x=float(positions[i][0]), y=float(positions[i][1]),
            yaw=float(yaws[i]), friction=float(friction), mass_scale=float(mass_scale),
            restitution=float(restitution), linear_damping=float(lin_d),
            angular_damping=float(ang_d)))

    return RandomizationSample(
        level=c.name, light_direction=tuple(float(v) for v in direction),
        light_color=tuple(float(v) for v in light_color), ambient=float(ambient),
        diffuse=float(diffuse), specular=float(specular), shadows=shadows,
        camera_eye_offset=eye, camera_target_offset=target, fov_offset=fov,
        table_rgb=tuple(float(v) for v in table_rgb), table_texture=table_texture,
        floor_texture=floor_texture, objects=tuple(objects),
        distractors=tuple(d.name for d in distractors))


def _sample_layout(items: list[Placement], c: RandomizationConfig,
                   g: np.random.Generator) -> tuple[list[np.ndarray], list[float]]:
    """Non-overlapping positions: a canonical layout, jittered by ``position_range``."""
    canonical = _canonical_layout(tuple(it.radius for it in items))
    if not c.poses:
        return canonical, [0.0] * len(items)
    positions = _rejection_layout(items, g, canonical, c.position_range)
    yaws = [float(g.uniform(-c.yaw_range, c.yaw_range)) for _ in items]
    return positions, yaws


_CANONICAL_CACHE: dict[tuple[float, ...], list[np.ndarray]] = {}


def _canonical_layout(radii: tuple[float, ...]) -> list[np.ndarray]:
    """The fixed layout for items of these footprint radii (same every call; cached)."""
    if radii not in _CANONICAL_CACHE:
        items = [Placement(f"item_{i}", "", "", r) for i, r in enumerate(radii)]
        _CANONICAL_CACHE[radii] = _rejection_layout(
            items, np.random.default_rng(_CANONICAL_SEED), None, 0.0)
    return [xy.copy() for xy in _CANONICAL_CACHE[radii]]


def _rejection_layout(items: list[Placement], g: np.random.Generator,
                      centres: list[np.ndarray] | None, spread: float,
                      attempts: int = 200) -> list[np.ndarray]:
    half = (REGION_HIGH - REGION_LOW) / 2
    for _ in range(20):
        placed: list[np.ndarray] = []
        for i, it in enumerate(items):
            lo = REGION_LOW + it.radius * 0.6
            hi = REGION_HIGH - it.radius * 0.6
            # (x, y, min distance) of every placed item, as floats: the check runs hundreds of
            # times per sample and numpy per-call overhead dominated reset time.
            others = [(float(q[0]), float(q[1]), it.radius + items[j].radius + 0.01)
                      for j, q in enumerate(placed)]
            for _ in range(attempts):
                if centres is None:
                    xy = g.uniform(lo, hi)
                else:
                    xy = np.clip(centres[i] + g.uniform(-1, 1, 2) * half * spread, lo, hi)
                x, y = float(xy[0]), float(xy[1])
                if all(math.hypot(x - qx, y - qy) >= d for qx, qy, d in others):
                    placed.append(xy)
                    break
            else:
                break
        if len(placed) == len(items):
            return placed
    raise LayoutError(f"could not place {len(items)} items without overlap: "
                      f"{[it.name for it in items]}")
