"""Rollout videos: the instruction, step count and outcome drawn on, encoded by the shared mp4
writer (:mod:`vla_sim.utils.video`).

Frames are uint8 (H, W, 3) arrays from ``env.render()``. Files are written under a temporary
name and renamed, so a crash never leaves a truncated video under the final name.
"""

from __future__ import annotations

import functools
import io
import textwrap
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vla_sim.utils.video import read_video, write_mp4

HOLD_S = 1.0  # the outcome badge stays on screen this long at the end of a video
GRID_MAX = 4  # episodes per cell in the grid video


def png_bytes(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@functools.lru_cache(maxsize=8)
def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # scalable with FreeType (Pillow >= 10.1)
    except TypeError:
        return ImageFont.load_default()


def overlay_frame(frame: np.ndarray, instruction: str, step: int,
                  outcome: Optional[bool] = None) -> np.ndarray:
    """A copy of ``frame`` with the instruction (top), ``step N`` (bottom left) and, when
    ``outcome`` is given, a small SUCCESS (green) / FAIL (red) badge in the top-right corner,
    just under the instruction, so the scene stays visible."""
    img = Image.fromarray(np.asarray(frame, dtype=np.uint8)).convert("RGB")
    w, h = img.size
    size = max(8, h // 22)
    font = _font(size)
    draw = ImageDraw.Draw(img, "RGBA")
    lines = textwrap.wrap(instruction, width=max(10, int(w / (0.55 * size))))[:3]
    band = (size + 2) * len(lines) + 4 if lines else 0
    if lines:
        draw.rectangle([0, 0, w, band], fill=(0, 0, 0, 140))
    for i, line in enumerate(lines):
        draw.text((3, 2 + i * (size + 2)), line, fill=(255, 255, 255), font=font)
    draw.text((3, h - size - 4), f"step {step}", fill=(255, 255, 0), font=font)
    if outcome is not None:
        _draw_badge(draw, w, band, size, outcome)
    return np.asarray(img)


def _draw_badge(draw: Any, w: int, top: int, size: int, outcome: bool) -> None:
    """SUCCESS / FAIL in white on an opaque green / red box, right-aligned, ``top + 2`` px down."""
    text, colour = ("SUCCESS", (0, 160, 0)) if outcome else ("FAIL", (200, 0, 0))
    font = _font(size)
    box = draw.textbbox((0, 0), text, font=font)
    tw, th, pad = box[2] - box[0], box[3] - box[1], max(2, size // 4)
    x1, y0 = w - 2, top + 2
    x0, y1 = x1 - tw - 2 * pad, y0 + th + 2 * pad
    draw.rectangle([x0, y0, x1, y1], fill=colour)
    draw.text((x0 + pad - box[0], y0 + pad - box[1]), text, fill=(255, 255, 255), font=font)


def write_episode_video(frames: Sequence[np.ndarray], path: Path, instruction: str,
                        success: bool, fps: int = 20) -> Path:
    """One episode: ``frames[t]`` is the render after ``t`` steps; the last frame is held for
    ``HOLD_S`` seconds with the SUCCESS/FAIL badge."""
    out = [overlay_frame(f, instruction, t) for t, f in enumerate(frames)]
    final = overlay_frame(frames[-1], instruction, len(frames) - 1, outcome=success)
    out.extend([final] * max(1, int(HOLD_S * fps)))
    return write_mp4(out, path, fps=fps)


def grid_frames(videos: Sequence[Sequence[np.ndarray]], cols: Optional[int] = None
                ) -> list[np.ndarray]:
    """Tile several episodes side by side, frame by frame; shorter episodes hold their last
    frame. All frames must have the same size."""
    if not videos:
        raise ValueError("grid_frames needs at least one video")
    n = len(videos)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w, c = np.asarray(videos[0][0]).shape
    length = max(len(v) for v in videos)
    out = []
    for t in range(length):
        canvas = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
        for i, v in enumerate(videos):
            r, col = divmod(i, cols)
            canvas[r * h:(r + 1) * h, col * w:(col + 1) * w] = v[min(t, len(v) - 1)]
        out.append(canvas)
    return out


def write_grid_video(videos: Sequence[Sequence[np.ndarray]], path: Path, fps: int = 20,
                     cols: Optional[int] = None) -> Path:
    return write_mp4(grid_frames(videos, cols), path, fps=fps)


def write_cell_grids(config: Any, episodes: Sequence[Any], cells: Sequence[Any]) -> None:
    """For each cell with recorded episodes, write ``<cell>_grid.mp4`` of up to ``GRID_MAX``
    of them into the video dir and set ``cell.grid_video``."""
    video_dir = Path(config.video_dir)
    for cell in cells:
        recorded = [e for e in episodes
                    if (e.env_id, e.split, e.level) == (cell.env_id, cell.split, cell.level)
                    and e.video][:GRID_MAX]
        if len(recorded) < 2:
            continue
        name = recorded[0].video.replace(f"_ep{recorded[0].index:03d}.mp4", "_grid.mp4")
        write_grid_video([read_video(video_dir / e.video) for e in recorded],
                         video_dir / name, fps=config.fps)
        cell.grid_video = name
