"""The envs work inside Gymnasium vector envs, instructions included."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import vla_sim  # noqa: F401


@pytest.mark.parametrize("mode,kwargs", [("sync", {}), ("async", {"shared_memory": False})])
def test_vector_env_carries_images_and_instructions(mode: str, kwargs: dict) -> None:
    envs = gym.make_vec("vla_sim/Reach-v0", num_envs=2, vectorization_mode=mode,
                        vector_kwargs=kwargs, image_size=32)
    try:
        obs, _ = envs.reset(seed=3)
        assert obs["image"].shape == (2, 32, 32, 3)
        single = gym.make("vla_sim/Reach-v0", image_size=32)
        expected = [single.reset(seed=s)[0]["instruction"] for s in (3, 4)]
        single.close()
        assert list(obs["instruction"]) == expected
        obs, rew, term, trunc, _ = envs.step(np.zeros((2, 4), np.float32))
        assert rew.shape == (2,) and obs["state"].shape == (2, 22)
    finally:
        envs.close()


def test_short_env_names_resolve_to_registered_ids() -> None:
    from vla_sim.envs.registration import resolve_env_id

    for name in ("PickPlace", "pickplace", "pick_place", "PickPlace-v0", "vla_sim/PickPlace-v0"):
        assert resolve_env_id(name) == "vla_sim/PickPlace-v0"
    assert resolve_env_id("MultiTask") == "vla_sim/MultiTask-v0"
    with pytest.raises(ValueError, match="unknown env 'Fly'"):
        resolve_env_id("Fly")
