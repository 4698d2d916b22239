"""The sampler alone: factor isolation, seeding, colour bounds, layouts, distractors, configs."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from vla_sim.config import ConfigError
from vla_sim.randomization import (
    COLOR_NAMES,
    COLOR_REGIONS,
    LEVELS,
    Placement,
    RandomizationConfig,
    RandomizationSample,
    resolve_randomization,
    sample_randomization,
)
from vla_sim.randomization.colors import rgb_to_hsv, sample_rgb
from vla_sim.sim.scene import FOOTPRINT

ITEMS = [Placement("red_cube", "red", "cube", FOOTPRINT["cube"]),
         Placement("green_sphere", "green", "sphere", FOOTPRINT["sphere"]),
         Placement("blue_tray", "blue", "tray", FOOTPRINT["tray"], movable=False),
         Placement("yellow_tray", "yellow", "tray", FOOTPRINT["tray"], movable=False)]
SWITCHES = ("lighting", "textures", "object_textures", "colors", "poses", "camera", "physics")

# Which sample fields each factor owns (object fields are per object).
FACTOR_FIELDS = {
    "lighting": {"light_direction", "light_color", "ambient", "diffuse", "specular", "shadows"},
    "textures": {"table_rgb", "table_texture", "floor_texture", "obj:texture"},
    "colors": {"obj:rgb"},
    "poses": {"obj:x", "obj:y", "obj:yaw"},
    "camera": {"camera_eye_offset", "camera_target_offset", "fov_offset"},
    "physics": {"obj:friction", "obj:mass_scale", "obj:restitution", "obj:linear_damping",
                "obj:angular_damping"},
}


def only(factor: str) -> RandomizationConfig:
    """The ``high`` ranges with every switch off except ``factor``."""
    off = {s: False for s in SWITCHES}
    off["distractors"] = 0
    if factor == "distractors":
        off["distractors"] = LEVELS["high"].distractors
    else:
        off[factor] = True
        if factor == "textures":
            off["object_textures"] = True
    return dataclasses.replace(LEVELS["high"], name=f"only_{factor}", **off)


def changed_fields(a: RandomizationSample, b: RandomizationSample) -> set[str]:
    out = {f.name for f in dataclasses.fields(a)
           if f.name not in ("objects", "level", "distractors")
           and getattr(a, f.name) != getattr(b, f.name)}
    for oa in a.objects:
        ob = next((o for o in b.objects if o.name == oa.name), None)
        if ob is None:
            continue
        out |= {f"obj:{f.name}" for f in dataclasses.fields(oa)
                if getattr(oa, f.name) != getattr(ob, f.name)}
    return out


def draw(config, seed, items=ITEMS, **kw) -> RandomizationSample:
    return sample_randomization(config, items, np.random.default_rng(seed), **kw)


@pytest.mark.parametrize("factor", list(FACTOR_FIELDS))
def test_each_factor_changes_its_fields_and_nothing_else(factor):
    changed = set()
    for seed in range(20):
        base, on = draw(LEVELS["none"], seed), draw(only(factor), seed)
        assert on.distractors == () and len(on.objects) == len(base.objects)
        diff = changed_fields(base, on)
        assert diff <= FACTOR_FIELDS[factor], (factor, diff - FACTOR_FIELDS[factor])
        changed |= diff
    # over 20 seeds every field the factor owns moved at least once
    # (object textures only go on distractors, which are off here)
    assert changed >= FACTOR_FIELDS[factor] - {"obj:texture", "shadows"}


def test_distractors_add_objects_and_change_nothing_about_task_objects():
    n_seen = set()
    for seed in range(30):
        base, on = draw(LEVELS["none"], seed), draw(only("distractors"), seed)
        assert changed_fields(base, on) == set()
        names = {o.name for o in on.objects}
        assert set(on.distractors) == names - {it.name for it in ITEMS}
        n_seen.add(len(on.distractors))
    assert n_seen == {0, 1, 2}


def test_switching_a_factor_on_does_not_shift_the_others():
    for seed in range(10):
        everything = draw(LEVELS["high"], seed)
        no_light = draw(dataclasses.replace(LEVELS["high"], lighting=False), seed)
        assert changed_fields(everything, no_light) <= FACTOR_FIELDS["lighting"]


@pytest.mark.parametrize("level", list(LEVELS))
def test_same_seed_same_sample_and_plain_data_round_trip(level):
    a, b = draw(LEVELS[level], 5), draw(LEVELS[level], 5)
    assert a == b and a.digest() == b.digest()
    assert RandomizationSample.from_dict(a.to_dict()) == a
    assert draw(LEVELS[level], 6) != a or level == "none"


def test_none_level_is_the_fixed_canonical_scene():
    assert changed_fields(draw(LEVELS["none"], 1), draw(LEVELS["none"], 2)) == set()


@pytest.mark.parametrize("name", COLOR_NAMES)
def test_jittered_colours_stay_in_their_named_hsv_region(name):
    rng = np.random.default_rng(0)
    region = COLOR_REGIONS[name]
    for amount in (0.0, 0.3, 1.0):
        for _ in range(1000 if amount == 1.0 else 100):
            h, s, v = rgb_to_hsv(sample_rgb(name, rng, amount))
            assert region.contains_hsv(h, s, v, tol=1e-4), (name, h, s, v)


def test_high_samples_never_overlap_and_distractors_are_new_pairs():
    config = LEVELS["high"]
    radius = {it.name: it.radius for it in ITEMS}
    task_pairs = {(it.color, it.shape) for it in ITEMS}
    for seed in range(1000):
        s = draw(config, seed)
        objs = s.objects
        for a, b in itertools.combinations(objs, 2):
            ra = radius.get(a.name, FOOTPRINT[a.shape])
            rb = radius.get(b.name, FOOTPRINT[b.shape])
            assert np.hypot(a.x - b.x, a.y - b.y) >= ra + rb, (seed, a.name, b.name)
        pairs = [(o.color, o.shape) for o in objs if o.name in s.distractors]
        assert not set(pairs) & task_pairs and len(set(pairs)) == len(pairs)
        # named objects keep their plain colour (textures only on distractors)
        assert all(o.texture == -1 for o in objs if o.name not in s.distractors)


def test_excluded_pairs_never_appear_as_distractors():
    excluded = frozenset((c, s) for c in COLOR_NAMES for s in ("sphere", "cylinder"))
    for seed in range(100):
        s = draw(LEVELS["high"], seed, exclude_pairs=excluded)
        assert not {(o.color, o.shape) for o in s.objects if o.name in s.distractors} & excluded


def test_scaled_interpolates_ranges_and_keeps_switches():
    half = LEVELS["high"].scaled(0.5)
    assert half.lighting and half.camera_eye_jitter == pytest.approx(0.025)
    assert half.distractors == 1 and half.name == "high@0.50"
    zero = LEVELS["high"].scaled(0.0)
    s0, s_none = draw(zero, 3), draw(LEVELS["none"], 3)
    # zero strength: no jitter anywhere (poses keep the canonical layout centres)
    assert changed_fields(s0, s_none) <= {"obj:x", "obj:y", "table_rgb"} | {"obj:yaw"}
    with pytest.raises(ValueError, match="strength"):
        LEVELS["high"].scaled(1.5)


def test_config_validation_names_the_bad_field():
    with pytest.raises(ValueError, match="color_jitter"):
        RandomizationConfig(color_jitter=2.0)
    with pytest.raises(ValueError, match="distractors"):
        RandomizationConfig(distractors=7)
    with pytest.raises(ValueError, match="none.*low.*medium.*high"):
        resolve_randomization("extreme")


def test_yaml_custom_config_loads(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nlighting: true\nlight_direction_jitter: 0.3\ndistractors: 2\n")
    cfg = resolve_randomization(path)
    assert cfg.name == "mine" and cfg.lighting and cfg.light_direction_jitter == 0.3
    assert cfg.distractors == 2 and not cfg.physics
    assert resolve_randomization(str(path)) == cfg
    bad = tmp_path / "bad.yaml"
    bad.write_text("lighting: true\nlight_jitter: 0.3\n")
    with pytest.raises(ConfigError, match="light_jitter"):
        resolve_randomization(bad)
    assert resolve_randomization({"name": "d", "camera": True}).camera
