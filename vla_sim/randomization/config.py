"""Randomization ranges: one switch and one range per factor, and the named levels.

A level is just a :class:`RandomizationConfig`; ``strength`` in [0, 1] interpolates every range
between ``none`` and ``high`` so a curriculum can turn randomization up between episodes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class RandomizationConfig:
    """Domain-randomization ranges. Every factor has an on/off switch."""

    name: str = "custom"

    # --- lighting ---
    lighting: bool = False
    light_direction_jitter: float = 0.0
    """Max per-axis offset added to the light direction vector (unitless)."""
    light_color_jitter: float = 0.0
    """Max per-channel drop of the light colour from white (0..1)."""
    ambient_jitter: float = 0.0
    diffuse_jitter: float = 0.0
    specular_jitter: float = 0.0
    shadow_prob: float = 0.0
    """Probability of rendering shadows."""

    # --- textures ---
    textures: bool = False
    texture_prob: float = 0.0
    """Probability that the table / floor each get a procedural texture instead of a plain colour."""
    object_textures: bool = False
    table_color_jitter: float = 0.0
    """Max change of the plain table colour's brightness (0..1)."""

    # --- object colours ---
    colors: bool = False
    color_jitter: float = 0.0
    """0 = nominal colour, 1 = anywhere in the colour name's HSV region."""

    # --- object poses ---
    poses: bool = False
    position_range: float = 0.0
    """Fraction of the object region used (0 = fixed slots, 1 = whole reachable region)."""
    yaw_range: float = 0.0
    """Max |yaw| of objects (radians)."""

    # --- camera ---
    camera: bool = False
    camera_eye_jitter: float = 0.0
    """Max per-axis offset of the camera position (m)."""
    camera_target_jitter: float = 0.0
    """Max per-axis offset of the look-at point (m)."""
    fov_jitter: float = 0.0
    """Max change of the vertical field of view (degrees)."""

    # --- physics ---
    physics: bool = False
    friction_jitter: float = 0.0
    """Relative change of lateral friction (e.g. 0.3 -> x0.7 .. x1.3)."""
    mass_jitter: float = 0.0
    restitution_max: float = 0.0
    damping_max: float = 0.0

    # --- distractors ---
    distractors: int = 0
    """Maximum number of extra objects (0..3)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and v < 0:
                raise ValueError(f"randomization {f.name} must be >= 0, got {v}")
        for name in ("shadow_prob", "texture_prob", "color_jitter", "position_range",
                     "light_color_jitter", "table_color_jitter"):
            if getattr(self, name) > 1:
                raise ValueError(f"randomization {name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.distractors <= 3:
            raise ValueError(f"randomization distractors must be in 0..3, got {self.distractors}")
        if self.friction_jitter >= 1 or self.mass_jitter >= 1:
            raise ValueError("friction_jitter and mass_jitter must be < 1 (relative changes)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def scaled(self, strength: float) -> "RandomizationConfig":
        """Every range multiplied by ``strength`` in [0, 1]; switches stay as they are."""
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or f.name == "name":
                kw[f.name] = v
            elif isinstance(v, int):
                kw[f.name] = int(round(v * strength))
            else:
                kw[f.name] = v * strength
        kw["name"] = f"{self.name}@{strength:.2f}"
        return RandomizationConfig(**kw)


LEVELS: dict[str, RandomizationConfig] = {
    "none": RandomizationConfig(name="none"),
    "low": RandomizationConfig(
        name="low", lighting=True, light_direction_jitter=0.2, light_color_jitter=0.05,
        ambient_jitter=0.05, diffuse_jitter=0.05, specular_jitter=0.02,
        colors=True, color_jitter=0.3, poses=True, position_range=0.6, yaw_range=0.4,
        camera=True, camera_eye_jitter=0.01, camera_target_jitter=0.01, fov_jitter=1.0,
        physics=True, friction_jitter=0.1, mass_jitter=0.1, restitution_max=0.05,
        damping_max=0.02),
    "medium": RandomizationConfig(
        name="medium", lighting=True, light_direction_jitter=0.5, light_color_jitter=0.15,
        ambient_jitter=0.12, diffuse_jitter=0.12, specular_jitter=0.05, shadow_prob=0.3,
        textures=True, texture_prob=0.5, table_color_jitter=0.15,
        colors=True, color_jitter=0.6, poses=True, position_range=0.85, yaw_range=1.0,
        camera=True, camera_eye_jitter=0.025, camera_target_jitter=0.02, fov_jitter=3.0,
        physics=True, friction_jitter=0.2, mass_jitter=0.25, restitution_max=0.1,
        damping_max=0.05, distractors=1),
    "high": RandomizationConfig(
        name="high", lighting=True, light_direction_jitter=0.9, light_color_jitter=0.3,
        ambient_jitter=0.2, diffuse_jitter=0.2, specular_jitter=0.1, shadow_prob=0.5,
        textures=True, texture_prob=0.9, object_textures=True, table_color_jitter=0.3,
        colors=True, color_jitter=1.0, poses=True, position_range=1.0, yaw_range=3.14159,
        camera=True, camera_eye_jitter=0.05, camera_target_jitter=0.04, fov_jitter=5.0,
        physics=True, friction_jitter=0.3, mass_jitter=0.4, restitution_max=0.2,
        damping_max=0.1, distractors=2),
}


def resolve_randomization(spec: "str | RandomizationConfig | dict | Path") -> RandomizationConfig:
    """A level name, a YAML path, a dict of fields or a config object -> a config."""
    if isinstance(spec, RandomizationConfig):
        return spec
    if isinstance(spec, dict):
        return RandomizationConfig(**spec)
    if isinstance(spec, Path) or (isinstance(spec, str) and spec.endswith((".yaml", ".yml"))):
        from vla_sim.config import load_config

        return load_config(RandomizationConfig, spec)
    if isinstance(spec, str):
        if spec in LEVELS:
            return LEVELS[spec]
        raise ValueError(f"unknown randomization level {spec!r}; valid levels: {list(LEVELS)} "
                         "or a path to a YAML file of RandomizationConfig fields")
    raise TypeError(f"randomization must be a level name, YAML path, dict or RandomizationConfig,"
                    f" got {type(spec).__name__}")
