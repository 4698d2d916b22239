import numpy as np
import pytest

from vla_sim.evaluation.video import (
    HOLD_S,
    grid_frames,
    overlay_frame,
    write_episode_video,
    write_grid_video,
)
from vla_sim.utils.video import read_video, write_mp4


def _frames(n, h=48, w=64):
    return [np.full((h, w, 3), (10 * i) % 255, np.uint8) for i in range(n)]


def _read(path):
    return read_video(path)


def test_mp4_opens_with_expected_frame_count_and_size(tmp_path):
    path = write_mp4(_frames(12), tmp_path / "a.mp4", fps=20)
    frames = _read(path)
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3)
    assert not list(tmp_path.glob(".*tmp*"))  # the temp file was renamed away


def test_odd_sizes_are_padded_to_even_not_rescaled(tmp_path):
    frames = _read(write_mp4(_frames(3, 47, 63), tmp_path / "odd.mp4"))
    assert frames[0].shape == (48, 64, 3)


def _greenish(px):
    px = px.astype(int)
    return px[1] > px[0] + 50 and px[1] > px[2] + 50


def test_episode_video_holds_the_outcome_badge_in_the_top_right_corner(tmp_path):
    fps = 10
    path = write_episode_video(_frames(5, 128, 128), tmp_path / "ep.mp4", "pick up the red cube",
                               success=True, fps=fps)
    frames = _read(path)
    assert len(frames) == 5 + int(HOLD_S * fps)
    top_right = frames[-1][:32, 64:].reshape(-1, 3)
    assert sum(_greenish(px) for px in top_right) > 50  # the green SUCCESS badge
    assert not _greenish(frames[-1][64, 64]) and not _greenish(frames[-1][64, 5])
    assert not any(_greenish(px) for px in frames[0][:32, 64:].reshape(-1, 3))  # only at the end


@pytest.mark.parametrize("outcome", [True, False])
def test_outcome_badge_leaves_the_centre_of_the_frame_unchanged(outcome):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)  # the default render size
    text = "pick up the red cube and put it in the blue bowl, then go back to the start"
    plain = overlay_frame(frame, text, 3)
    marked = overlay_frame(frame, text, 3, outcome=outcome)
    changed = np.any(marked != plain, axis=-1)
    assert changed.any()
    ys, xs = np.nonzero(changed)
    # a small box in the top-right corner (under the instruction): right half, top quarter,
    # a few percent of the frame
    assert xs.min() >= 256 // 2 and ys.max() < 256 // 4
    assert changed.sum() < 0.05 * changed.size
    assert np.array_equal(marked[64:, :], plain[64:, :])  # centre and bottom untouched


def test_overlay_draws_without_changing_size():
    frame = np.zeros((64, 80, 3), np.uint8)
    out = overlay_frame(frame, "stack the yellow cube on the purple cube", 7, outcome=False)
    assert out.shape == frame.shape and out.any()
    assert not frame.any()  # input untouched


def test_grid_pads_shorter_episodes_with_their_last_frame(tmp_path):
    a, b, c = _frames(4, 16, 16), _frames(2, 16, 16), _frames(3, 16, 16)
    grid = grid_frames([a, b, c], cols=2)
    assert len(grid) == 4 and grid[0].shape == (32, 32, 3)
    assert np.array_equal(grid[3][0:16, 16:32], b[-1])
    assert not grid[3][16:32, 16:32].any()  # the empty fourth slot stays black
    frames = _read(write_grid_video([a, b, c], tmp_path / "grid.mp4", cols=2))
    assert len(frames) == 4 and frames[0].shape == (32, 32, 3)


def test_empty_video_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_mp4([], tmp_path / "x.mp4")
