"""The one mp4 writer and reader: H.264 (yuv420p) with FFmpeg.

Datasets (camera frames, LeRobot videos) and evaluation (rollout videos, grids) both encode here,
with the same settings. Lowest layer: numpy, imageio-ffmpeg and PyAV only.

Decoding runs in process (PyAV): DAgger decodes every round's new rollouts for training, and
starting an ``ffmpeg`` process per clip (imageio-ffmpeg, before) cost ~40 ms, 5x the decoding
itself. The frames are the same bit for bit (tests/utils). Encoding stays with the ``ffmpeg``
command that imageio-ffmpeg ships: PyAV's own libx264 codes the first frames of a few clips
differently (3 of 150 measured, within a few grey levels), and every dataset's bytes would change.

Frames are uint8 ``(H, W, 3)`` RGB. yuv420p subsamples chroma 2x2, so both sides must be even:
:func:`encode_video_bytes` refuses odd sides (dataset frames have a declared shape),
:func:`write_mp4` pads them by edge repeat (renders of any size), never rescales.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np

from vla_sim.utils.io import atomic_output_path

# Constant-quality H.264. CRF 18 keeps 64x64 renders within a few grey levels of the raw frames
# (measured in tests/utils); GOP 2 as LeRobot's default so random seeks decode at most 2 frames.
# Changing any of these changes every dataset video's bytes (and so dataset hashes).
CRF = 18
GOP = 2
PIX_FMT = "yuv420p"
PRESET = "veryfast"

Frames = Union[np.ndarray, Sequence[np.ndarray]]


def _check_frames(frames: Frames) -> tuple[int, int]:
    """(H, W) of the first frame; raises on an empty sequence or a non-RGB shape."""
    if len(frames) == 0:
        raise ValueError("no frames to encode (0 frames)")
    shape = np.shape(frames[0])
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"frames must be (H, W, 3) uint8, got a frame of shape {shape}")
    return int(shape[0]), int(shape[1])


def pad_to_even(frame: np.ndarray) -> np.ndarray:
    """Pad to even height and width by repeating the last row / column (no rescaling)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _encode_to_file(frames: Iterable[np.ndarray], path: Path, size_hw: tuple[int, int],
                    fps: int) -> None:
    import imageio_ffmpeg

    # imageio-ffmpeg moves ffmpeg to its own process group (so that Ctrl-C reaches only Python)
    # with a preexec_fn, and that makes Python fork the whole caller instead of vfork-ing it:
    # 70 ms a clip in a process holding 600 MB (a rollout worker with torch) against 32 ms
    # without. Without it Ctrl-C also stops an encode in flight, abandoned with the command.
    os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")
    h, w = size_hw
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), pix_fmt_in="rgb24", pix_fmt_out=PIX_FMT, fps=fps, quality=None,
        codec="libx264", macro_block_size=1, ffmpeg_log_level="error",
        output_params=["-crf", str(CRF), "-g", str(GOP), "-preset", PRESET, "-threads", "1"])
    writer.send(None)  # start the generator
    try:
        for frame in frames:
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if frame.shape != (h, w, 3):
                raise ValueError(f"all frames must be {h}x{w}x3, got {frame.shape}")
            writer.send(frame)
    finally:
        writer.close()


def encode_video_bytes(frames: Frames, fps: int) -> bytes:
    """Encode ``(T, H, W, 3)`` uint8 frames to mp4 bytes; H and W must be even."""
    if isinstance(frames, np.ndarray) and (frames.ndim != 4 or frames.shape[-1] != 3):
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got shape {frames.shape}")
    h, w = _check_frames(frames)
    if h % 2 or w % 2:
        raise ValueError(f"H.264 {PIX_FMT} needs even image sides, got {h}x{w}")
    fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix="vla_sim_enc_")
    os.close(fd)
    try:
        _encode_to_file(frames, Path(tmp), (h, w), fps)
        return Path(tmp).read_bytes()
    finally:
        os.unlink(tmp)


def write_mp4(frames: Frames, path: Path, fps: int = 20) -> Path:
    """Encode frames to ``path`` atomically (temp name, then rename), padding odd sides to even;
    returns ``path``."""
    h, w = _check_frames(frames)
    path = Path(path)
    tmp = atomic_output_path(path)
    try:
        _encode_to_file((pad_to_even(np.asarray(f, dtype=np.uint8)) for f in frames), tmp,
                        (h + h % 2, w + w % 2), fps)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_video(path: Path | io.BytesIO, expected_shape: tuple[int, int] | None = None
               ) -> np.ndarray:
    """Decode every frame of an mp4 file (or bytes buffer) to a ``(T, H, W, 3)`` uint8 array.

    ``expected_shape``: (H, W) the frames must have; a mismatch raises ``ValueError``."""
    import av

    name = path if isinstance(path, io.BytesIO) else str(path)
    with av.open(name, "r") as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        h, w = stream.codec_context.height, stream.codec_context.width
        if expected_shape is not None and (h, w) != tuple(expected_shape):
            raise ValueError(f"{path}: frames are {h}x{w}, expected "
                             f"{expected_shape[0]}x{expected_shape[1]}")
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        return np.zeros((0, h, w, 3), dtype=np.uint8)
    return np.stack(frames)


def decode_video_bytes(data: bytes) -> np.ndarray:
    """Decode mp4 bytes (as :func:`encode_video_bytes` returns) to ``(T, H, W, 3)`` uint8."""
    return read_video(io.BytesIO(data))
