"""The one mp4 writer and reader (datasets and evaluation videos)."""

import numpy as np
import pytest

from vla_sim.utils.video import (
    decode_video_bytes,
    encode_video_bytes,
    pad_to_even,
    read_video,
    write_mp4,
)


def _smooth_frames(t=6, h=64, w=64):
    """Gradients that move over time: what camera frames look like to the codec."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([(x * 3 + 10 * i) % 256, (y * 3) % 256,
                               np.full_like(x, 40 + 20 * i)], -1) for i in range(t)]
                    ).astype(np.uint8)


def test_mp4_file_round_trips_frames_within_a_few_grey_levels(tmp_path):
    frames = _smooth_frames()
    back = read_video(write_mp4(list(frames), tmp_path / "a.mp4", fps=20))
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames).mean() < 2.0
    assert np.percentile(np.abs(back.astype(int) - frames), 99) <= 6


def test_bytes_and_file_writers_encode_identically(tmp_path):
    frames = _smooth_frames(4, 32, 48)
    data = encode_video_bytes(frames, 20)
    assert write_mp4(frames, tmp_path / "b.mp4", fps=20).read_bytes() == data
    assert np.array_equal(decode_video_bytes(data), read_video(tmp_path / "b.mp4"))
    assert not list(tmp_path.glob(".*tmp*"))  # the temp file was renamed away


def test_odd_sides_are_refused_for_bytes_and_padded_for_files(tmp_path):
    frames = _smooth_frames(3, 47, 63)
    with pytest.raises(ValueError, match="even image sides"):
        encode_video_bytes(frames, 20)
    back = read_video(write_mp4(frames, tmp_path / "odd.mp4"))
    assert back.shape == (3, 48, 64, 3)
    assert pad_to_even(frames[0]).shape == (48, 64, 3)


def test_expected_shape_mismatch_and_empty_input_name_the_problem(tmp_path):
    path = write_mp4(_smooth_frames(2, 16, 16), tmp_path / "s.mp4")
    with pytest.raises(ValueError, match="frames are 16x16, expected 32x32"):
        read_video(path, expected_shape=(32, 32))
    with pytest.raises(ValueError, match="no frames"):
        encode_video_bytes(np.zeros((0, 16, 16, 3), np.uint8), 20)
    with pytest.raises(ValueError, match="no frames"):
        write_mp4([], tmp_path / "x.mp4")


def test_in_process_decoding_gives_the_ffmpeg_commands_frames_bit_for_bit(tmp_path):
    import imageio_ffmpeg

    rng = np.random.default_rng(0)
    frames = np.clip(_smooth_frames(9, 64, 64).astype(int)
                     + rng.integers(-20, 20, (9, 64, 64, 3)), 0, 255).astype(np.uint8)
    path = tmp_path / "c.mp4"
    path.write_bytes(encode_video_bytes(frames, 20))
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    size = next(gen)["size"]
    command = np.stack([np.frombuffer(b, np.uint8).reshape(size[1], size[0], 3) for b in gen])
    assert np.array_equal(read_video(path), command)


def test_a_file_that_is_not_a_video_raises_naming_it(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not an mp4 at all")
    with pytest.raises(ValueError, match="bad.mp4"):
        read_video(bad)
