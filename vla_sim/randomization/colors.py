"""Named colours and the HSV region each name covers.

Jittered colours stay inside their region so "the red cube" is still red to a person. Bounds are
(hue in degrees, saturation and value in [0, 1]); red wraps around 0 degrees.

| name   | hue (deg)   | saturation | value     |
|--------|-------------|------------|-----------|
| red    | 350 .. 8    | 0.75 .. 1  | 0.65 .. 1 |
| orange | 20 .. 34    | 0.80 .. 1  | 0.80 .. 1 |
| yellow | 50 .. 60    | 0.75 .. 1  | 0.80 .. 1 |
| green  | 105 .. 135  | 0.65 .. 1  | 0.50 .. 0.9 |
| blue   | 215 .. 235  | 0.70 .. 1  | 0.65 .. 1 |
| purple | 270 .. 290  | 0.55 .. 0.9| 0.50 .. 0.85 |
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ColorRegion:
    hue: tuple[float, float]  # degrees; lo > hi means the range wraps through 0
    sat: tuple[float, float]
    val: tuple[float, float]
    nominal: tuple[float, float, float]  # (h deg, s, v) used when colours are not randomized

    def contains_hsv(self, h: float, s: float, v: float, tol: float = 1e-6) -> bool:
        lo, hi = self.hue
        in_hue = (lo - tol <= h <= hi + tol) if lo <= hi else (h >= lo - tol or h <= hi + tol)
        return (in_hue and self.sat[0] - tol <= s <= self.sat[1] + tol
                and self.val[0] - tol <= v <= self.val[1] + tol)


COLOR_REGIONS: dict[str, ColorRegion] = {
    "red": ColorRegion((350.0, 8.0), (0.75, 1.0), (0.65, 1.0), (0.0, 0.9, 0.85)),
    "orange": ColorRegion((20.0, 34.0), (0.80, 1.0), (0.80, 1.0), (27.0, 0.9, 0.95)),
    "yellow": ColorRegion((50.0, 60.0), (0.75, 1.0), (0.80, 1.0), (55.0, 0.9, 0.95)),
    "green": ColorRegion((105.0, 135.0), (0.65, 1.0), (0.50, 0.9), (120.0, 0.8, 0.7)),
    "blue": ColorRegion((215.0, 235.0), (0.70, 1.0), (0.65, 1.0), (225.0, 0.85, 0.85)),
    "purple": ColorRegion((270.0, 290.0), (0.55, 0.9), (0.50, 0.85), (280.0, 0.7, 0.7)),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLOR_REGIONS)
SHAPES: tuple[str, ...] = ("cube", "cylinder", "sphere")


def hsv_to_rgb(h_deg: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, s, v)
    return (r, g, b)


def rgb_to_hsv(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    return (h * 360.0, s, v)


def nominal_rgb(name: str) -> tuple[float, float, float]:
    return hsv_to_rgb(*region(name).nominal)


def region(name: str) -> ColorRegion:
    try:
        return COLOR_REGIONS[name]
    except KeyError:
        raise ValueError(f"unknown colour {name!r}; valid colours: {list(COLOR_NAMES)}") from None


def sample_rgb(name: str, rng: np.random.Generator, amount: float) -> tuple[float, float, float]:
    """A colour inside ``name``'s region; ``amount`` in [0, 1] widens the draw from the nominal
    colour (0) to the whole region (1)."""
    reg = region(name)
    h0, s0, v0 = reg.nominal
    lo, hi = reg.hue
    if lo > hi:
        hi += 360.0
        if h0 < lo:
            h0 += 360.0

    def draw(nom: float, lo_: float, hi_: float) -> float:
        return float(rng.uniform(nom + (lo_ - nom) * amount, nom + (hi_ - nom) * amount))

    h = draw(h0, lo, hi) % 360.0
    s = draw(s0, *reg.sat)
    v = draw(v0, *reg.val)
    return hsv_to_rgb(h, s, v)
