"""Robot and scene assets that pybullet_data lacks (render-aware low-poly robots).

Files are found through the installed package, never through the current directory.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent


def asset_path(*parts: str) -> Path:
    """Absolute path of an asset file, e.g. ``asset_path("robots", "panda", "panda_lowpoly.urdf")``."""
    path = ASSETS_DIR.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"asset not found: {path} (is the vla-sim install complete?)")
    return path
