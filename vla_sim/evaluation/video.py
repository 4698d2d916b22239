"""Rollout videos: H.264 mp4 files with the instruction, step count and outcome drawn on.

Frames are uint8 (H, W, 3) arrays from ``env.render()``. Files are written under a temporary
name and renamed, so a crash never leaves a truncated video under the final name.
"""

from __future__ import annotations

import functools
import io
import os
import textwrap
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vla_sim.utils.io import atomic_output_path

HOLD_S = 1.0  # the outcome banner stays on screen this long at the end of a video
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
    ``outcome`` is given, a SUCCESS (green) / FAIL (red) banner across the middle."""
    img = Image.fromarray(np.asarray(frame, dtype=np.uint8)).convert("RGB")
    w, h = img.size
    size = max(8, h // 22)
    font = _font(size)
    draw = ImageDraw.Draw(img, "RGBA")
    lines = textwrap.wrap(instruction, width=max(10, int(w / (0.55 * size)))) [:3]
    draw.rectangle([0, 0, w, (size + 2) * len(lines) + 4], fill=(0, 0, 0, 140))
    for i, line in enumerate(lines):
        draw.text((3, 2 + i * (size + 2)), line, fill=(255, 255, 255), font=font)
    draw.text((3, h - size - 4), f"step {step}", fill=(255, 255, 0), font=font)
    if outcome is not None:
        text, colour = ("SUCCESS", (0, 160, 0, 210)) if outcome else ("FAIL", (200, 0, 0, 210))
        big = _font(max(10, h // 8))
        draw.rectangle([0, h // 2 - h // 10, w, h // 2 + h // 10], fill=colour)
        box = draw.textbbox((0, 0), text, font=big)
        draw.text(((w - (box[2] - box[0])) // 2, (h - (box[3] - box[1])) // 2 - box[1]), text,
                  fill=(255, 255, 255), font=big)
    return np.asarray(img)


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad to even height and width (H.264 with yuv420p needs both even) by edge repeat."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_mp4(frames: Sequence[np.ndarray], path: Path, fps: int = 20) -> Path:
    """Encode frames as H.264 (yuv420p) mp4 at ``path`` atomically; returns ``path``."""
    import imageio.v2 as imageio

    if len(frames) == 0:
        raise ValueError(f"no frames to write to {path}")
    path = Path(path)
    tmp = atomic_output_path(path)
    try:
        # macro_block_size=2: only evenness is required, and _even() guarantees it, so imageio
        # never rescales frames to multiples of 16.
        with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                pixelformat="yuv420p", macro_block_size=2, quality=7,
                                ffmpeg_log_level="error") as writer:
            for frame in frames:
                writer.append_data(_even(np.asarray(frame, dtype=np.uint8)))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_video(path: Path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    with imageio.get_reader(Path(path), format="FFMPEG") as reader:
        return [np.asarray(f) for f in reader]


def write_episode_video(frames: Sequence[np.ndarray], path: Path, instruction: str,
                        success: bool, fps: int = 20) -> Path:
    """One episode: ``frames[t]`` is the render after ``t`` steps; the last frame is held for
    ``HOLD_S`` seconds under the SUCCESS/FAIL banner."""
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
