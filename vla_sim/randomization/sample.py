"""The frozen, serialisable result of one randomization draw, applied by the sim layer."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """What the sampler needs to know about one item it places on the table."""

    name: str
    color: str
    shape: str  # cube | cylinder | sphere | tray | zone
    radius: float  # footprint radius (m) used to keep items apart
    movable: bool = True  # physics is randomized only for movable objects


@dataclass(frozen=True)
class ObjectSample:
    name: str
    color: str
    shape: str
    rgb: tuple[float, float, float]
    texture: int  # index into the texture bank, -1 = plain colour
    x: float  # metres, world frame, table top is z = 0
    y: float
    yaw: float  # radians
    friction: float
    mass_scale: float
    restitution: float
    linear_damping: float
    angular_damping: float


@dataclass(frozen=True)
class RandomizationSample:
    level: str
    light_direction: tuple[float, float, float]
    light_color: tuple[float, float, float]
    ambient: float
    diffuse: float
    specular: float
    shadows: bool
    camera_eye_offset: tuple[float, float, float]
    camera_target_offset: tuple[float, float, float]
    fov_offset: float
    table_rgb: tuple[float, float, float]
    table_texture: int
    floor_texture: int
    objects: tuple[ObjectSample, ...]
    distractors: tuple[str, ...]  # names of objects that are distractors

    def to_dict(self) -> dict:
        """Plain data (lists, floats, strings) for ``info`` and JSON files."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "RandomizationSample":
        try:
            objects = tuple(ObjectSample(**{k: (tuple(v) if isinstance(v, list) else v)
                                            for k, v in o.items()}) for o in data["objects"])
            kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()
                  if k != "objects"}
            return cls(objects=objects, **kw)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a valid randomization sample: {exc}") from None

    def digest(self) -> str:
        """Short stable hash of the sample (for fingerprints)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def object(self, name: str) -> ObjectSample:
        for o in self.objects:
            if o.name == name:
                return o
        raise KeyError(f"no object {name!r} in the sample")
