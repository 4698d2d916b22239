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


@pytest.mark.parametrize("message, failures, calls, ok", [
    ("Could not load meta information\n=== stderr ===\n", 1, 2, True),  # slow once: retried
    ("Could not load meta information", 99, 3, False),  # always slow: gives up after 3 tries
    ("moov atom not found", 99, 1, False),  # a broken file: no retry
])
def test_a_header_timeout_on_a_busy_machine_is_retried_and_other_errors_are_not(
        tmp_path, monkeypatch, message, failures, calls, ok):
    """imageio-ffmpeg raises "Could not load meta information" when ffmpeg's header takes
    more than 10 s."""
    import imageio_ffmpeg

    path = write_mp4(list(_smooth_frames()), tmp_path / "a.mp4", fps=20)
    real, seen = imageio_ffmpeg.read_frames, []

    def failing(*args, **kwargs):
        seen.append(1)
        if len(seen) <= failures:
            raise OSError(message)
        return real(*args, **kwargs)

    monkeypatch.setattr(imageio_ffmpeg, "read_frames", failing)
    if ok:
        assert read_video(path).shape == (6, 64, 64, 3)
    else:
        with pytest.raises(OSError, match=message.split("\n")[0]):
            read_video(path)
    assert len(seen) == calls
