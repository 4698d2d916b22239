"""Layout of :meth:`Task.goal_state`, the privileged per-frame label that datasets record as
``observation.environment_state``.

Plain data (no PyBullet, no torch), so a trainer can slice the labels of a dataset without
loading the simulator. The vector is float32, in this order::

    object_xyz            3   the instructed object's position (m, world frame)
    destination_xyz       3   the destination's position (the object's again when the task has
                              none, e.g. Reach)
    front_object_uv       2   the object's centre in the front camera's image, normalised:
                              u (column, rightwards) and v (row, downwards) in [-1, 1], -1/+1 =
                              the outer edges of the first/last pixel (as grid_sample with
                              align_corners=False)
    front_destination_uv  2   the destination's, likewise
    front_visible         2   1 where the object / destination centre lies in front of the camera
                              and inside the image, else 0 (its uv is then clamped to the edge)
    wrist_object_uv       2   the same three fields for the wrist camera (which moves with the
    wrist_destination_uv  2   end-effector), whether or not the env renders it
    wrist_visible         2
    holding               1   1 while the gripper holds the instructed object, else 0

Datasets collected before the image-plane labels carry only the first 6 values
(``GOAL_XYZ_DIM``); every consumer must accept them (the grounding labels are then absent).
"""

from __future__ import annotations

from vla_sim.envs.cameras import CAMERAS

PROJECTED_CAMERAS = CAMERAS
"""Cameras whose image-plane coordinates the goal state records, in layout order."""

GOAL_STATE_FIELDS: tuple[tuple[str, int], ...] = (
    ("object_xyz", 3), ("destination_xyz", 3),
    *((f"{cam}_{field}", size) for cam in PROJECTED_CAMERAS
      for field, size in (("object_uv", 2), ("destination_uv", 2), ("visible", 2))),
    ("holding", 1),
)
"""(name, size) of each field of the goal state, in order."""


def field_slices(fields: tuple[tuple[str, int], ...]) -> dict[str, slice]:
    """Field name -> its slice of a flat vector laid out as ``fields`` ((name, size), in order)."""
    out, start = {}, 0
    for name, size in fields:
        out[name] = slice(start, start + size)
        start += size
    return out


GOAL_STATE_LAYOUT: dict[str, slice] = field_slices(GOAL_STATE_FIELDS)
"""Field name -> its slice of the goal-state vector."""
GOAL_STATE_DIM = GOAL_STATE_LAYOUT["holding"].stop  # 19
GOAL_XYZ_DIM = GOAL_STATE_LAYOUT["destination_xyz"].stop  # 6: the positions (all old datasets hold)


def _names() -> list[str]:
    names = []
    for name, size in GOAL_STATE_FIELDS:
        if name.endswith("_visible"):
            cam = name.removesuffix("_visible")
            names += [f"{cam}_object_visible", f"{cam}_destination_visible"]
        elif size == 1:
            names.append(name)
        elif size == 3:  # object_x .. destination_z (the names 6-value datasets carry)
            names += [f"{name.removesuffix('_xyz')}_{axis}" for axis in "xyz"]
        else:
            names += [f"{name}_{axis}" for axis in "uv"]
    return names


GOAL_STATE_NAMES: list[str] = _names()
"""One name per value: ``object_x`` .. ``front_object_uv_u`` .. ``holding``."""
