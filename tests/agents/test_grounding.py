"""Grounding from simulator labels: language as a spatial query over the conv map, trained to
find the named object, the destination and the current target; labels follow the image
augmentation; old 6-value goal states still train the auxiliary head."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_policy import SMALL

from vla_sim.agents.policies import load_policy
from vla_sim.agents.policies.config import VLAPolicyConfig
from vla_sim.agents.policies.vla import VLAPolicy
from vla_sim.agents.training.bc import (
    BCConfig,
    _Batches,
    augment,
    augment_with_shift,
    grounding_metrics,
    grounding_targets,
    instruction_features,
    train_bc,
)
from vla_sim.config import load_config
from vla_sim.data.demos import DemoArrays
from vla_sim.envs.goal_state import GOAL_STATE_DIM
from vla_sim.envs.goal_state import GOAL_STATE_LAYOUT as L
from vla_sim.language.encoder import HashingTextEncoder

S = 32
POLICY = {**SMALL, "image_size": S}


def two_squares(n: int = 400, seed: int = 0) -> DemoArrays:
    """A red and a blue square at random places; the instruction names one (the object), the
    other is the destination; steps 5-9 of each 10-step episode "hold" the object."""
    rng = np.random.default_rng(seed)
    images, goals, instr, states, actions = [], [], [], [], []
    for i in range(n):
        img = np.full((S, S, 3), 120, np.uint8)
        while True:
            a, b = rng.integers(0, S - 6, 2), rng.integers(0, S - 6, 2)
            if np.abs(a - b).max() > 7:
                break
        img[a[0]:a[0] + 6, a[1]:a[1] + 6] = (220, 30, 30)
        img[b[0]:b[0] + 6, b[1]:b[1] + 6] = (30, 30, 220)
        red = bool(rng.random() < 0.5)
        obj, dest = (a, b) if red else (b, a)

        def uv(corner):  # square centre, normalised: x = column, y = row
            return np.array([(corner[1] + 3) * 2 / S - 1, (corner[0] + 3) * 2 / S - 1])

        goal = np.zeros(GOAL_STATE_DIM, np.float32)
        for cam in ("front", "wrist"):
            goal[L[f"{cam}_object_uv"]], goal[L[f"{cam}_destination_uv"]] = uv(obj), uv(dest)
            goal[L[f"{cam}_visible"]] = 1.0
        goal[L["holding"]] = float(i % 10 >= 5)
        state = np.zeros(22, np.float32)
        state[7] = goal[L["holding"]][0]  # the gripper opening tells the phase
        images.append(img)
        goals.append(goal)
        states.append(state)
        instr.append(f"go to the {'red' if red else 'blue'} cube")
        actions.append(np.r_[uv(obj), 0.0, 0.0])
    data = DemoArrays.from_steps({"image": np.stack(images)}, states, actions, instr,
                                 np.arange(n) // 10)
    data.env_states = np.stack(goals)
    return data


def config(**overrides) -> BCConfig:
    base = dict(steps=250, batch_size=32, lr=3e-3, warmup_steps=10, val_every_grad_steps=1000,
                checkpoint_every_grad_steps=10000, log_every_grad_steps=50, device="cpu", tensorboard=False,
                num_threads=1, progress=False, shift_pad=2, val_fraction=0.2, policy=POLICY)
    base.update(overrides)
    return load_config(BCConfig, overrides=[
        f"{k}={json.dumps(v) if isinstance(v, (dict, list, bool)) else v}"
        for k, v in base.items()])


@pytest.fixture(scope="module")
def data() -> DemoArrays:
    return two_squares()


@pytest.fixture(scope="module")
def encoder():
    return HashingTextEncoder()


def pixel_errors(run, data, encoder) -> dict[str, float]:
    policy = load_policy(run / "last")
    batches = _Batches(data, instruction_features(encoder, data.instructions, policy.config),
                       policy.config, torch.device("cpu"))
    return grounding_metrics(policy, batches, np.arange(len(data.states)), 128)


def test_spatial_queries_learn_to_find_the_named_object_destination_and_current_target(
        tmp_path, data, encoder):
    cfg = config(ground_weight=1.0, policy={**POLICY, "spatial_lang": True})
    train_bc(data, tmp_path / "run", cfg, encoder=encoder)
    err = pixel_errors(tmp_path / "run", data, encoder)
    # Guessing the image centre is ~8 px off; the named square is found within ~1 px, and the
    # "current target" query switches from the object to the destination with the phase.
    for slot in ("object", "destination", "target"):
        assert err[f"val/ground_px/front_{slot}"] < 2.0, err
    assert err["val/phase_accuracy"] > 0.95


def test_grounding_labels_as_a_plain_auxiliary_target_train_a_linear_head(
        tmp_path, data, encoder):
    """The ablation: no spatial attention, the trunk features predict the coordinates."""
    train_bc(data, tmp_path / "run", config(steps=150, ground_weight=1.0), encoder=encoder)
    policy = load_policy(tmp_path / "run" / "last")
    assert policy.config.grounding and not policy.config.spatial_lang
    assert policy.ground_head.coords is not None
    assert pixel_errors(tmp_path / "run", data, encoder)["val/ground_px/front_object"] < 4.0


def test_spatial_policy_acts_from_raw_observations_and_reloads_identically(tmp_path, encoder):
    from vla_sim.agents.policies.checkpoint import save_policy

    cfg = VLAPolicyConfig(**{**POLICY, "cameras": ["front", "wrist"], "spatial_lang": True,
                             "grounding": True})
    policy = VLAPolicy(cfg)
    policy.text_encoder = encoder
    rng = np.random.default_rng(0)
    obs = {"image": rng.integers(0, 255, (S, S, 3), dtype=np.uint8),
           "wrist_image": rng.integers(0, 255, (S, S, 3), dtype=np.uint8),
           "state": rng.standard_normal(22).astype(np.float32),
           "instruction": "put the red cube in the blue tray"}
    action = policy.act(obs)
    assert action.shape == (4,) and np.all(np.abs(action) <= 1.0)
    save_policy(policy, tmp_path / "ckpt")
    again = load_policy(tmp_path / "ckpt")
    again.text_encoder = encoder
    np.testing.assert_allclose(again.act(obs), action, atol=1e-6)


def test_augment_with_shift_reports_where_the_content_moved():
    images = torch.zeros(6, 3, 16, 16)
    images[:, :, 7, 9] = 1.0  # one bright pixel at row 7, column 9
    rng = np.random.default_rng(0)
    shifted, moved = augment_with_shift(images, rng, 3, 0.0)
    for img, (dx, dy) in zip(shifted, moved):
        row, col = np.unravel_index(int(img[0].argmax()), (16, 16))
        assert (row, col) == (7 + dy, 9 + dx)
    # The same draws as augment(): a run's images do not change with the new labels.
    torch.testing.assert_close(augment(images, np.random.default_rng(1), 3, 0.2),
                               augment_with_shift(images, np.random.default_rng(1), 3, 0.2)[0])


def test_grounding_targets_follow_the_shift_and_switch_to_the_destination_on_grasp():
    goal = np.zeros((2, GOAL_STATE_DIM), np.float32)
    goal[:, L["front_object_uv"]] = [0.5, -0.5]
    goal[:, L["front_destination_uv"]] = [-0.9, 0.2]
    goal[:, L["front_visible"]] = 1.0
    goal[1, L["holding"]] = 1.0
    moved = [np.array([[2.0, -4.0], [-2.0, 0.0]], np.float32)]  # pixels, 16 px images
    t = grounding_targets(torch.from_numpy(goal), ["front"], 16, moved)
    np.testing.assert_allclose(t["uv"][0, 0, 0].numpy(), [0.75, -1.0])
    np.testing.assert_allclose(t["uv"][1, 0, 2].numpy(), [-1.15, 0.2])  # target = destination
    np.testing.assert_allclose(t["uv"][0, 0, 2].numpy(), t["uv"][0, 0, 0].numpy())
    # The second sample's destination was pushed off the image: no longer visible.
    assert t["visible"].tolist() == [[[1.0, 1.0, 1.0]], [[1.0, 0.0, 0.0]]]
    assert t["holding"].tolist() == [0.0, 1.0]


def test_old_six_value_goal_states_train_the_aux_head_on_the_positions(tmp_path, data, encoder):
    old = DemoArrays(images=data.images, states=data.states, actions=data.actions,
                     instructions=data.instructions, instruction_index=data.instruction_index,
                     episode_index=data.episode_index, env_states=data.env_states[:, :6])
    train_bc(old, tmp_path / "old", config(steps=4, aux_weight=1.0), encoder=encoder)
    assert load_policy(tmp_path / "old" / "last").config.aux_dim == 6
    # New datasets: the aux head still predicts the 6 positions, not the image labels.
    train_bc(data, tmp_path / "new", config(steps=4, aux_weight=1.0), encoder=encoder)
    assert load_policy(tmp_path / "new" / "last").config.aux_dim == 6


def test_ground_weight_without_image_plane_labels_names_the_missing_feature(
        tmp_path, data, encoder):
    old = DemoArrays(images=data.images, states=data.states, actions=data.actions,
                     instructions=data.instructions, instruction_index=data.instruction_index,
                     episode_index=data.episode_index, env_states=data.env_states[:, :6])
    with pytest.raises(ValueError, match="observation.environment_state"):
        train_bc(old, tmp_path / "run", config(ground_weight=1.0), encoder=encoder)


@pytest.mark.parametrize("bad, message", [
    (dict(spatial_lang=True, use_tokens=False), "use_tokens"),
    (dict(spatial_lang=True, spatial_queries=2), "spatial_queries"),
    (dict(spatial_dim=0), "spatial_dim"),
])
def test_config_rejects_spatial_settings_it_cannot_build(bad, message):
    with pytest.raises(ValueError, match=message):
        VLAPolicyConfig(**bad)
    with pytest.raises(ValueError, match="ground_weight"):
        BCConfig(ground_weight=-1.0)


def test_one_validation_pass_gives_the_loss_bc_loss_gives_and_the_grounding_metrics(
        tmp_path, data, encoder):
    from vla_sim.agents.training.bc import validation_metrics

    cfg = config(ground_weight=1.0, steps=20, policy={**POLICY, "spatial_lang": True,
                                                      "head": "flow"})
    train_bc(data, tmp_path / "run", cfg, encoder=encoder)
    policy = load_policy(tmp_path / "run" / "last")
    batches = _Batches(data, instruction_features(encoder, data.instructions, policy.config),
                       policy.config, torch.device("cpu"))
    ids = np.arange(len(data.states))
    torch.manual_seed(3)
    before = torch.get_rng_state()
    metrics = validation_metrics(policy, batches, ids, 7, grounding=True, seed=5)
    # The flow head's noise comes from the given seed; the caller's generator is left alone.
    assert torch.equal(torch.get_rng_state(), before)
    assert validation_metrics(policy, batches, ids, 7, seed=5)["val/loss"] == metrics["val/loss"]
    assert validation_metrics(policy, batches, ids, 7, seed=6)["val/loss"] != metrics["val/loss"]
    torch.manual_seed(5)
    with torch.no_grad():
        expected = sum(float(policy.bc_loss(*batches.get(ids[i:i + 7]))) * len(ids[i:i + 7])
                       for i in range(0, len(ids), 7)) / len(ids)
    assert metrics["val/loss"] == pytest.approx(expected, rel=1e-6)
    assert {k: v for k, v in metrics.items() if k != "val/loss"} == grounding_metrics(
        policy, batches, ids, 7)
