"""Procedural textures (checker, stripes, noise, wood grain) at several scales and colours.

The bank is generated once per machine (deterministic PNGs in a cache folder) and loaded once
per PyBullet client; randomization only picks indices into it, so 1,000 resets load no new
textures and use no extra memory.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from vla_sim.randomization.sampler import N_TEXTURES

TEXTURE_SIZE = 64
_KINDS = ("checker", "stripes", "noise", "wood")


def texture_image(index: int, size: int = TEXTURE_SIZE) -> np.ndarray:
    """uint8 (size, size, 3) texture number ``index`` of the bank (deterministic)."""
    if not 0 <= index < N_TEXTURES:
        raise ValueError(f"texture index must be in [0, {N_TEXTURES}), got {index}")
    rng = np.random.default_rng(1000 + index)
    kind = _KINDS[index % len(_KINDS)]
    scale = (2, 4, 8, 16)[(index // len(_KINDS)) % 4]
    c1 = rng.uniform(0.2, 0.95, 3)
    c2 = rng.uniform(0.05, 0.7, 3)
    # Half-desaturate: surfaces should not out-shout the named object colours.
    c1, c2 = (0.5 * c + 0.5 * c.mean() for c in (c1, c2))
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == "checker":
        m = ((np.floor(xx * scale) + np.floor(yy * scale)) % 2)[..., None]
    elif kind == "stripes":
        m = (np.floor((xx + yy) * scale) % 2)[..., None]
    elif kind == "noise":
        coarse = rng.uniform(0, 1, (scale + 1, scale + 1))
        idx = np.minimum((yy * scale).astype(int), scale), np.minimum((xx * scale).astype(int), scale)
        m = (0.6 * coarse[idx] + 0.4 * rng.uniform(0, 1, (size, size)))[..., None]
    else:  # wood: rings distorted by low-frequency noise
        r = np.hypot(xx - 0.3, yy + 0.2) * scale * 3 + 0.8 * np.sin(yy * 12 + xx * 5)
        m = (0.5 + 0.5 * np.sin(r * np.pi))[..., None]
    img = c2 + (c1 - c2) * m
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _cached_png(name: str, make) -> Path:
    folder = Path(os.environ.get("VLA_SIM_CACHE", Path(tempfile.gettempdir()) / "vla_sim_cache"))
    path = folder / "textures" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
        Image.fromarray(make()).save(tmp)
        os.replace(tmp, path)
    return path


def texture_file(index: int) -> Path:
    """PNG of texture ``index`` in the cache folder, written once (atomically)."""
    return _cached_png(f"tex_v2_{index:02d}_{TEXTURE_SIZE}.png", lambda: texture_image(index))


def white_texture_file() -> Path:
    """A plain white texture: PyBullet cannot remove a texture, only replace it."""
    return _cached_png("white.png", lambda: np.full((2, 2, 3), 255, np.uint8))


class TextureBank:
    """Texture ids of one client, loaded lazily and kept for the client's lifetime."""

    def __init__(self, client) -> None:
        self.client = client
        self._ids: dict[int, int] = {}

    def id(self, index: int) -> int:
        if index not in self._ids:
            self._ids[index] = self.client.loadTexture(str(texture_file(index)))
        return self._ids[index]

    def __len__(self) -> int:
        return len(self._ids)
