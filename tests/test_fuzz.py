"""Fuzzing the public entry points: ``gym.make`` arguments, actions, and config overrides.

The property everywhere: a clear error (``ValueError``/``TypeError`` with a message; a
``ConfigError`` is a ``ValueError``) or a valid result, never another exception, a crash or a
silent NaN.

Runs are reproducible by default (``derandomize``: the same examples every run, no example
database written). ``VLA_SIM_FUZZ_RANDOM=1`` draws new examples and ``VLA_SIM_FUZZ_SCALE=10``
draws ten times as many, to hunt for new failures; hypothesis prints the failing input.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import vla_sim  # noqa: F401  (registers the env ids)
from vla_sim.envs.registration import ENV_IDS

SCALE = max(1, int(os.environ.get("VLA_SIM_FUZZ_SCALE", "1")))


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples * SCALE, deadline=None, database=None,
                    derandomize=not os.environ.get("VLA_SIM_FUZZ_RANDOM"),
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


def assert_clear_error(exc: BaseException, what: str) -> None:
    assert isinstance(exc, (ValueError, TypeError)), f"{what}: {type(exc).__name__}: {exc}"
    assert str(exc).strip(), f"{what}: {type(exc).__name__} without a message"


def junk() -> st.SearchStrategy:
    """Values of the wrong type or out of any range."""
    return st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                     st.lists(st.integers(0, 3), max_size=3), st.just({"level": "low"}))


def assert_valid_obs(env: gym.Env, obs: dict, what: str) -> None:
    space = env.observation_space
    assert set(obs) == set(space.spaces), what
    for key, value in obs.items():
        assert space[key].contains(value), f"{what}: obs[{key!r}] outside its space"
        if isinstance(value, np.ndarray):
            assert np.all(np.isfinite(value)), f"{what}: obs[{key!r}] is not finite"


# ------------------------------------------------------------------------------ (a) gym.make
# every option valid (odd sizes included): the observations of the envs that must work
VALID_KWARGS = st.fixed_dictionaries({}, optional={
    "robot": st.sampled_from(["panda", "iiwa"]),
    "image_size": st.integers(16, 40),
    "cameras": st.sampled_from([("front",), ("front", "wrist"), ["front", "wrist"]]),
    "randomization": st.sampled_from(["none", "low", "medium", "high"]),
    "render_mode": st.sampled_from([None, "rgb_array"]),
    "render_size": st.integers(8, 64),
    "reward_type": st.sampled_from(["dense", "sparse"]),
    "instruction_split": st.sampled_from(["train", "heldout"]),
})
# any option may be junk: the errors that must be clear
JUNK_KWARGS = st.fixed_dictionaries({}, optional={
    "robot": st.one_of(st.sampled_from(["panda", "iiwa"]), st.sampled_from(["ur5", "", "PANDA"]),
                       junk()),
    # mostly valid sizes (odd ones too), else below/above the range or not an int
    "image_size": st.one_of(st.integers(16, 40), st.integers(-10**6, 15),
                            st.integers(513, 10**9), junk()),
    "cameras": st.one_of(st.sampled_from([("front",), ("front", "wrist"), ["front", "wrist"]]),
                         st.sampled_from([(), ("wrist",), ("front", "front"), ("front", "top"),
                                          "front", ("wrist", "front")]),
                         junk()),
    "randomization": st.one_of(st.sampled_from(["none", "low", "medium", "high"]),
                               st.sampled_from(["extreme", "missing.yaml", {"junk_field": 1}, {}]),
                               junk()),
    # strings only: gymnasium 1.4's make() itself calls render_mode.endswith() before the env
    # exists (AttributeError); VLAEnv refuses a non-string render_mode with a ValueError
    "render_mode": st.sampled_from([None, "rgb_array", "human_", "video"]),
    "render_size": st.one_of(st.integers(8, 64), st.integers(-10**6, 7),
                             st.integers(2049, 10**9), junk()),
    "reward_type": st.one_of(st.sampled_from(["dense", "sparse", "shaped"]), junk()),
    "instruction_split": st.one_of(st.sampled_from(["train", "heldout", "test"]), junk()),
})


@pytest.mark.filterwarnings("ignore:.*not in the possible render_modes")  # then refused
@fuzz_settings(25)  # ~0.05 s per env
@given(env_id=st.sampled_from(sorted(ENV_IDS)), kwargs=st.one_of(VALID_KWARGS, JUNK_KWARGS),
       seed=st.integers(0, 2**31 - 1), actions=st.integers(1, 3))
def test_gym_make_gives_a_clear_error_or_a_working_env(env_id, kwargs, seed, actions):
    what = f"gym.make({env_id!r}, **{kwargs!r})"
    try:
        env = gym.make(env_id, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the property under test
        assert_clear_error(exc, what)
        event(f"refused: {type(exc).__name__}")
        return
    event("made an env")
    try:
        obs, info = env.reset(seed=seed)
        assert_valid_obs(env, obs, what)
        assert isinstance(info["is_success"], bool)
        rng = np.random.default_rng(seed)
        for _ in range(actions):
            obs, reward, terminated, truncated, info = env.step(
                rng.uniform(-1, 1, 4).astype(np.float32))
            assert_valid_obs(env, obs, what)
            assert math.isfinite(reward), f"{what}: reward {reward}"
        if kwargs.get("render_mode") == "rgb_array":
            frame = env.render()
            size = kwargs.get("render_size", 256)
            assert frame.shape == (size, size, 3) and frame.dtype == np.uint8, what
    finally:
        env.close()


# ------------------------------------------------------------------------------ (b) actions
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
ACTIONS = st.one_of(
    st.lists(st.floats(-1e6, 1e6), min_size=4, max_size=4),             # valid, maybe clipped
    st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4),              # in range
    st.lists(FLOATS, min_size=4, max_size=4),                            # NaN / inf / huge
    st.lists(FLOATS, min_size=0, max_size=7).filter(lambda a: len(a) != 4),  # wrong length
    st.lists(st.lists(st.floats(-1, 1), min_size=1, max_size=4), min_size=1, max_size=4),
    st.sampled_from([None, 0.5, "abcd", [0, 0, 0, "x"], np.zeros((4, 1)), np.zeros((1, 4)),
                     np.zeros(4, np.int64), np.ones(4, bool), {"dx": 0.0}]),
)


@pytest.fixture(scope="module")
def env_pair():
    """Two identical envs: one steps the fuzzed action, the other its clipped version."""
    envs = [gym.make("vla_sim/PickPlace-v0", image_size=16) for _ in range(2)]
    yield envs
    for env in envs:
        env.close()


@fuzz_settings(60)
@given(action=ACTIONS, seed=st.integers(0, 2**31 - 1))
def test_step_refuses_bad_actions_and_clips_the_rest(env_pair, action, seed):
    env, ref = env_pair
    env.reset(seed=seed)
    try:
        as_float = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):
        as_float = None  # not numbers at all: step must say so
    try:
        obs, reward, *_ = env.step(action)
    except Exception as exc:  # noqa: BLE001 - the property under test
        assert_clear_error(exc, f"step({action!r})")
        event(f"refused: {type(exc).__name__}")
        if as_float is not None and as_float.shape == (4,) and np.all(np.isfinite(as_float)):
            raise AssertionError(f"step refused a valid action {action!r}: {exc}") from exc
        if as_float is not None and as_float.shape != (4,):
            assert "(4,)" in str(exc), f"step({action!r}): {exc} does not name the shape"
        return
    assert as_float is not None and as_float.shape == (4,) and np.all(np.isfinite(as_float)), \
        f"step accepted {action!r}"
    event("stepped" + (" (clipped)" if np.abs(as_float).max() > 1 else ""))
    assert_valid_obs(env, obs, f"step({action!r})")
    assert math.isfinite(reward)
    ref.reset(seed=seed)
    ref_obs, *_ = ref.step(np.clip(as_float, -1, 1))
    np.testing.assert_array_equal(obs["state"], ref_obs["state"])  # out-of-range = clipped


# ------------------------------------------------------------------------------ (c) configs
def _config_classes() -> dict[str, type]:
    from vla_sim.agents.training.configs import BCConfig, PPOConfig
    from vla_sim.data.collect import CollectConfig
    from vla_sim.evaluation.evaluator import EvalConfig

    return {c.__name__: c for c in (BCConfig, CollectConfig, EvalConfig, PPOConfig)}


def _keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key a ``key=value`` override can reach, nested configs included."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _keys(hints[f.name], prefix + f.name + ".")
        else:
            out.append(prefix + f.name)
    return out


CONFIGS = _config_classes()
OVERRIDE_VALUES = st.one_of(
    st.integers(-10**12, 10**12).map(str),
    st.sampled_from(["0", "-1", "1", "2", "1e-3", "-0.5", "3.5", "1e400", "nan", "inf", "-inf",
                     ".nan", ".inf", "-.inf", "true", "false", "null", "~", "", "[]", "[1, 2]",
                     "[a, b]", "['front']", "{}", "{a: 1}", "[[1]]", "front", "low", "'1'",
                     "0x10", "1_000", "[", "}", "a: b", "'", "${oc.env:NOPE}", "${x}"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)


@fuzz_settings(40)
@given(data=st.data(), name=st.sampled_from(sorted(CONFIGS)))
def test_config_overrides_give_a_config_or_a_value_error(data, name):
    from vla_sim.config import load_config

    cls = CONFIGS[name]
    keys = data.draw(st.lists(st.sampled_from(_keys(cls)), min_size=1, max_size=3, unique=True))
    overrides = [f"{k}={data.draw(OVERRIDE_VALUES, label=k)}" for k in keys]
    try:
        cfg = load_config(cls, overrides=overrides)
    except ValueError as exc:
        assert str(exc).strip(), f"{name} {overrides}: ValueError without a message"
        event(f"refused: {type(exc).__name__}")
        return
    except Exception as exc:  # noqa: BLE001 - the property under test
        raise AssertionError(f"load_config({name}, overrides={overrides!r}) raised "
                             f"{type(exc).__name__}: {exc}") from exc
    event("built a config")
    assert isinstance(cfg, cls)


# Found by the fuzz above: omegaconf raises TypeError("Cannot merge incompatible container
# types") for a mapping merged onto a list field (or a list onto a dict field); load_config
# turns it into a ConfigError naming the override.
@pytest.mark.parametrize("name,override", [("CollectConfig", "cameras={}"),
                                           ("EvalConfig", "env_ids={a: 1}"),
                                           ("BCConfig", "policy.channels={}"),
                                           ("PPOConfig", "policy=[1, 2]")])
def test_container_of_the_wrong_kind_is_a_config_error(name, override):
    from vla_sim.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=override.split("=")[0].split(".")[-1]):
        load_config(CONFIGS[name], overrides=[override])
