"""Training curves: success rate against env steps and against wall-clock, as a CSV and a PNG.

A point is one in-training success check: ``env_steps``, ``wall_s`` (seconds since the run
started), ``success`` (rate in [0, 1]), its 95% interval ``ci_low``/``ci_high`` and the
``episodes`` it counted. matplotlib is imported only when drawing, and draws on the Agg canvas
(no display needed, safe in worker processes).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

CURVE_FIELDS = ("env_steps", "wall_s", "success", "ci_low", "ci_high", "episodes")
CURVE_CSV = "curve.csv"
CURVES_PNG = "curves.png"


def write_curve_csv(path: str | Path, points: Iterable[Mapping[str, Any]]) -> Path:
    """Write the points (dicts with :data:`CURVE_FIELDS`) to ``path``, replacing it whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for point in points:
            writer.writerow({k: point[k] for k in CURVE_FIELDS})
    os.replace(tmp, path)
    return path


def read_curve_csv(path: str | Path) -> list[dict[str, float]]:
    """The points of a :func:`write_curve_csv` file (every value a float, ``episodes`` an int)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (int(float(r[k])) if k == "episodes" else float(r[k])) for k in CURVE_FIELDS}
            for r in rows]


def plot_success_curves(points: list[Mapping[str, Any]], path: str | Path,
                        title: str = "") -> Path:
    """Draw success vs env steps (left) and vs wall-clock minutes (right), each with its 95%
    interval as a band, into the PNG ``path`` (written beside, then renamed into place)."""
    # The Agg canvas on a bare Figure: no pyplot, so no global figure state, no GUI, and a
    # user's interactive backend is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    pts = sorted(points, key=lambda p: (p["env_steps"], p["wall_s"]))
    fig = Figure(figsize=(10, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    x_of = {"env steps": lambda p: p["env_steps"], "wall-clock (min)": lambda p: p["wall_s"] / 60}
    for ax, (label, x) in zip(axes, x_of.items()):
        xs = [x(p) for p in pts]
        ax.fill_between(xs, [p["ci_low"] for p in pts], [p["ci_high"] for p in pts],
                        color="tab:blue", alpha=0.2, linewidth=0, label="95% interval")
        ax.plot(xs, [p["success"] for p in pts], "o-", color="tab:blue", label="success rate")
        ax.set_xlabel(label)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("success rate")
    axes[0].legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


__all__ = ["CURVES_PNG", "CURVE_CSV", "CURVE_FIELDS", "plot_success_curves", "read_curve_csv",
           "write_curve_csv"]
