"""H.264 (yuv420p) encode and decode of camera frames through the ffmpeg that imageio-ffmpeg ships."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np

# Constant-quality H.264. CRF 18 keeps 64x64 renders within a few grey levels of the raw frames
# (measured in tests/data); GOP 2 as LeRobot's default so random seeks decode at most 2 frames.
CRF = 18
GOP = 2


def encode_video_bytes(frames: np.ndarray, fps: int) -> bytes:
    """Encode (T, H, W, 3) uint8 frames to MP4 bytes (H.264, yuv420p, ``fps`` frames per second).

    H and W must be even (yuv420p subsamples chroma 2x2).
    """
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got shape {frames.shape}")
    t, h, w, _ = frames.shape
    if t == 0:
        raise ValueError("cannot encode an empty episode (0 frames)")
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even image sides, got {h}x{w}")
    fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix="vla_sim_enc_")
    os.close(fd)
    try:
        writer = imageio_ffmpeg.write_frames(
            tmp, (w, h), pix_fmt_in="rgb24", pix_fmt_out="yuv420p", fps=fps, quality=None,
            codec="libx264", macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-crf", str(CRF), "-g", str(GOP), "-preset", "veryfast",
                           "-threads", "1"])
        writer.send(None)  # start the generator
        for frame in frames:
            writer.send(frame)
        writer.close()
        return Path(tmp).read_bytes()
    finally:
        os.unlink(tmp)


def decode_video(path: Path, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Decode every frame of an MP4 to a (T, H, W, 3) uint8 array."""
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24",
                                     input_params=["-threads", "1"])
    meta = gen.__next__()
    w, h = meta["size"]
    if expected_shape is not None and (h, w) != tuple(expected_shape):
        raise ValueError(f"{path}: frames are {h}x{w}, expected {expected_shape[0]}x{expected_shape[1]}")
    frames = [np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3) for buf in gen]
    if not frames:
        return np.zeros((0, h, w, 3), dtype=np.uint8)
    return np.stack(frames)
