"""Training curves: the CSV round-trips, and the PNG is a real image with both panels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vla_sim.utils.plots import CURVE_FIELDS, plot_success_curves, read_curve_csv, write_curve_csv

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _points(n: int = 4) -> list[dict]:
    return [{"env_steps": 500 * i, "wall_s": 30.0 * i, "success": 0.2 * i,
             "ci_low": max(0.0, 0.2 * i - 0.15), "ci_high": min(1.0, 0.2 * i + 0.15),
             "episodes": 20} for i in range(n)]


def test_curve_csv_round_trips(tmp_path):
    path = write_curve_csv(tmp_path / "curve.csv", _points())
    assert path.read_text().splitlines()[0] == ",".join(CURVE_FIELDS)
    back = read_curve_csv(path)
    assert back == [{k: (float(v) if k != "episodes" else v) for k, v in p.items()}
                    for p in _points()]


def test_curves_png_is_a_valid_image_and_not_blank(tmp_path):
    path = plot_success_curves(_points(), tmp_path / "curves.png", title="PPO test")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] > 200 and image.shape[1] > 2 * image.shape[0] // 2
    assert (image < 250).any(axis=-1).mean() > 0.02  # lines, bands, axes were drawn
    assert not list(tmp_path.glob(".*"))  # written beside, then renamed into place
    plot_success_curves(_points(1), tmp_path / "one.png")  # a single point draws too
