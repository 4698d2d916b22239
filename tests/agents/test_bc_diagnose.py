"""benchmarks/bc_diagnose.py: how a failed push is classified, when the expert is pushing, and
which scenes only the shape word decides."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bc_diagnose import has_same_color_distractor, push_ending, pushing, same_color

from vla_sim.envs.tasks.base import SceneObject, TaskInstance
from vla_sim.envs.tasks.push import TOLERANCE


def _state(ee_xy, ee_z=0.018, obj=(0.5, 0.0), zone=(0.6, 0.0)):
    return {"ee_position": [*ee_xy, ee_z], "roles": {"object": "cube", "destination": "zone"},
            "objects": {"cube": {"position": [*obj, 0.02]}, "zone": {"position": [*zone, 0.0]}}}


def test_an_object_that_never_moved_is_untouched():
    assert push_ending([0.2] * 100, moved=0.005, tolerance=TOLERANCE) == "untouched"


def test_an_object_that_came_close_and_left_overshot():
    dists = [0.2 - 0.004 * i for i in range(40)] + [0.05 + 0.003 * i for i in range(60)]
    assert push_ending(dists, moved=0.3, tolerance=TOLERANCE) == "overshot"


def test_an_object_still_closing_in_at_the_limit_is_under_way():
    dists = [0.3 - 0.002 * i for i in range(100)]
    assert push_ending(dists, moved=0.2, tolerance=TOLERANCE) == "under_way"


def test_an_object_left_short_and_still_is_stalled():
    dists = [0.3 - 0.004 * i for i in range(40)] + [0.14] * 60
    assert push_ending(dists, moved=0.16, tolerance=TOLERANCE) == "stalled"


def test_pushing_means_low_and_behind_the_object_on_the_zone_line():
    assert pushing(_state((0.47, 0.0)))                  # 3 cm behind, on the line, low
    assert not pushing(_state((0.53, 0.0)))              # in front of the object
    assert not pushing(_state((0.47, 0.05)))             # 5 cm off the line
    assert not pushing(_state((0.47, 0.0), ee_z=0.08))   # travelling above it


def _scene(target: str, *others: str) -> TaskInstance:
    objects = tuple(SceneObject(*name.split("_")) for name in (target, *others))
    return TaskInstance("reach", objects, {"object": target}, "reach it", "t", "train")


def test_a_scene_with_an_object_of_the_targets_colour_and_another_shape_needs_the_shape_word():
    assert same_color("red_cube", "red_cylinder") and not same_color("red_cube", "orange_cube")
    assert has_same_color_distractor(_scene("red_cube", "red_sphere", "blue_cube"))
    assert not has_same_color_distractor(_scene("red_cube", "orange_cube", "blue_sphere"))
    # A container of the target's colour is no distractor: it cannot be the target.
    assert not has_same_color_distractor(_scene("red_cube", "red_tray", "blue_cube"))
