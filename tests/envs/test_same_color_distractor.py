"""The ``same_color_distractor`` env option: training scenes where only the shape word picks the
target (Reach's misses are almost all a same-colour object of another shape), drawn only when
asked, so default episodes keep their seeds' scenes."""

from __future__ import annotations

import gymnasium as gym
import pytest

import vla_sim  # noqa: F401
from vla_sim.data.collect import CollectConfig, make_env
from vla_sim.language.instructions import allowed_combo


def scenes(p: float | None, seeds: range, env_id: str = "vla_sim/Reach-v0"):
    kwargs = {} if p is None else {"same_color_distractor": p}
    env = gym.make(env_id, image_size=16, **kwargs)
    try:
        out = []
        for seed in seeds:
            env.reset(seed=seed)
            inst = env.unwrapped.instance
            out.append((inst.roles["object"], tuple(o.name for o in inst.objects),
                        inst.instruction))
        return out
    finally:
        env.close()


MOVABLE = ("cube", "cylinder", "sphere")


def has_twin(target: str, names: tuple[str, ...]) -> bool:
    """A movable object of the target's colour and another shape is in the scene."""
    color, shape = target.split("_")
    return any(n.split("_")[0] == color and n.split("_")[1] in MOVABLE and n.split("_")[1] != shape
               for n in names)


def twin_allowed(target: str, shapes: tuple[str, ...]) -> bool:
    """The train split lets some other shape of the target's colour appear at all."""
    color, shape = target.split("_")
    return any(s != shape and allowed_combo(color, s, "train", target=False) for s in shapes)


def test_off_by_default_and_at_zero_every_seed_gives_the_scene_it_always_gave():
    seeds = range(12)
    assert scenes(None, seeds) == scenes(0.0, seeds)


@pytest.mark.parametrize("env_id, shapes", [
    ("vla_sim/Reach-v0", MOVABLE), ("vla_sim/Push-v0", ("cube", "cylinder")),
    ("vla_sim/PickPlace-v0", MOVABLE)])
def test_always_on_puts_a_same_colour_object_of_another_shape_beside_the_target(env_id, shapes):
    drawn = scenes(1.0, range(20), env_id)
    # Wherever the split allows such an object (it hides held-out colour-shape pairs), it is there.
    assert all(has_twin(target, names) == twin_allowed(target, shapes)
               for target, names, _ in drawn), drawn
    assert sum(has_twin(target, names) for target, names, _ in drawn) >= 5
    # The uniform draw gives such scenes only now and then (about 15% on Reach).
    uniform = scenes(0.0, range(20), env_id)
    assert sum(has_twin(target, names) for target, names, _ in uniform) < 15


def test_the_instruction_still_names_the_target_with_its_shape():
    for target, names, text in scenes(1.0, range(10)):
        assert len(set(names)) == len(names)  # distinct colour-shape pairs
        assert target in names


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "often", True])
def test_a_probability_outside_zero_to_one_is_refused_before_the_simulator_starts(bad):
    with pytest.raises(ValueError, match="same_color_distractor"):
        gym.make("vla_sim/Reach-v0", image_size=16, same_color_distractor=bad)


def test_collection_settings_pass_it_to_the_env_and_name_it_in_the_dataset_identity(tmp_path):
    cfg = CollectConfig(out=str(tmp_path), env="Reach", image_size=16,
                        same_color_distractor=0.5)
    env = make_env(cfg)
    try:
        assert env.unwrapped.same_color_distractor == 0.5
    finally:
        env.close()
    assert cfg.identity()["same_color_distractor"] == 0.5
    # At 0 the identity is the one datasets made before the option recorded (they resume).
    assert "same_color_distractor" not in CollectConfig(out=str(tmp_path)).identity()
    with pytest.raises(ValueError, match="same_color_distractor"):
        CollectConfig(out=str(tmp_path), same_color_distractor=2.0)
