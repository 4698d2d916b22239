"""Behaviour cloning: learning, checkpoints, exact resume, and clear errors on bad input."""

import json

import numpy as np
import pytest
import torch

from vla_sim.agents.policies import load_policy
from vla_sim.agents.training.bc import BCConfig, augment, train_bc
from vla_sim.config import ConfigError, load_config
from vla_sim.data.demos import DemoArrays, split_episodes
from vla_sim.language.encoder import HashingTextEncoder

POLICY = dict(image_size=16, channels=[8, 16], image_features=32, attn_dim=16, attn_heads=2,
              lang_features=16, state_hidden=16, trunk_hidden=[32], max_tokens=8)
INSTRUCTIONS = ["move left to the red cube", "move right to the blue cube"]


def synthetic_demos(episodes: int = 6, steps: int = 10, seed: int = 0) -> DemoArrays:
    """x-action from the instruction, y from image brightness, z and gripper from the state."""
    rng = np.random.default_rng(seed)
    images, states, actions, instr, eps = [], [], [], [], []
    for e in range(episodes):
        which = e % 2
        for t in range(steps):
            level = rng.integers(0, 256)
            images.append(np.full((16, 16, 3), level, np.uint8))
            state = rng.standard_normal(22).astype(np.float32)
            states.append(state)
            actions.append([0.8 if which else -0.8, level / 255.0 - 0.5,
                            0.5 * np.tanh(state[0]), 1.0 if state[1] > 0 else -1.0])
            instr.append(INSTRUCTIONS[which])
            eps.append(e)
    return DemoArrays.from_steps({"image": np.stack(images)}, states, actions, instr, eps)


def config(**overrides) -> BCConfig:
    base = dict(steps=8, batch_size=16, lr=3e-3, warmup_steps=2, val_every_grad_steps=4,
                checkpoint_every_grad_steps=4, log_every_grad_steps=2, device="cpu", tensorboard=False, num_threads=1,
                progress=False, policy=POLICY)
    base.update(overrides)
    return load_config(BCConfig, overrides=[f"{k}={_fmt(v)}" for k, v in base.items()])


def _fmt(v):
    return json.dumps(v) if isinstance(v, (dict, list, bool)) else str(v)


@pytest.fixture(scope="module")
def demos() -> DemoArrays:
    return synthetic_demos()


@pytest.fixture(scope="module")
def encoder():
    return HashingTextEncoder()


def test_loss_decreases_on_a_tiny_dataset(tmp_path, demos, encoder):
    result = train_bc(demos, tmp_path / "run", config(steps=80, val_every_grad_steps=40), encoder=encoder)
    first, last = np.mean(result.train_losses[:5]), np.mean(result.train_losses[-5:])
    assert last < 0.5 * first, (first, last)
    assert result.val_loss is not None and result.samples_per_s > 0


def test_checkpoint_layout_and_reload_gives_identical_actions(tmp_path, demos, encoder):
    out = tmp_path / "run"
    train_bc(demos, out, config(), encoder=encoder)
    for sub in ("checkpoints/step_000004", "checkpoints/step_000008", "last", "best"):
        assert (out / sub / "model.safetensors").is_file(), sub
    assert (out / "last" / "trainer_state.pt").is_file()
    a, b = load_policy(out / "last"), load_policy(out / "checkpoints" / "step_000008")
    a.text_encoder = b.text_encoder = encoder
    obs = {"image": demos.images["image"][:5], "state": demos.states[:5],
           "instruction": [INSTRUCTIONS[0]] * 5}
    np.testing.assert_array_equal(a.act(obs), b.act(obs))
    meta = json.loads((out / "last" / "config.json").read_text())["meta"]
    assert meta["step"] == 8 and meta["instructions"] == sorted(INSTRUCTIONS)


def test_resume_reproduces_an_uninterrupted_run(tmp_path, demos, encoder):
    full = train_bc(demos, tmp_path / "full", config(), encoder=encoder)
    part = train_bc(demos, tmp_path / "part", config(steps_this_run=4), encoder=encoder)
    assert part.steps == 4
    resumed = train_bc(demos, tmp_path / "part", config(), resume=True, encoder=encoder)
    assert resumed.steps == 8
    assert resumed.train_losses == full.train_losses
    again = train_bc(demos, tmp_path / "part", config(), resume=True, encoder=encoder)
    assert again.steps == 8 and again.wall_s == 0.0  # a finished run is left alone
    sd_full = load_policy(tmp_path / "full" / "last").state_dict()
    sd_res = load_policy(tmp_path / "part" / "last").state_dict()
    for key in sd_full:
        torch.testing.assert_close(sd_full[key], sd_res[key], rtol=0, atol=0)


def test_resume_with_a_changed_config_names_the_change(tmp_path, demos, encoder):
    train_bc(demos, tmp_path / "run", config(steps_this_run=4), encoder=encoder)
    with pytest.raises(ValueError, match=r"lr: 0\.003 -> 0\.001"):
        train_bc(demos, tmp_path / "run", config(lr=1e-3), resume=True, encoder=encoder)
    with pytest.raises(ValueError, match="--resume"):
        train_bc(demos, tmp_path / "run", config(), encoder=encoder)


def test_resume_without_a_previous_run_is_an_error(tmp_path, demos, encoder):
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train_bc(demos, tmp_path / "empty", config(), resume=True, encoder=encoder)


def test_best_follows_in_sim_success_when_given(tmp_path, demos, encoder):
    scores = iter([0.2, 0.6, 0.4])
    result = train_bc(demos, tmp_path / "run", config(steps=6, eval_every_grad_steps=2, val_every_grad_steps=100),
                      eval_fn=lambda policy: next(scores), encoder=encoder)
    assert result.best_kind == "success" and result.best_metric == 0.6
    meta = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["meta"]
    assert meta["step"] == 4


def test_dataset_dims_that_do_not_fit_the_policy_are_named(tmp_path, demos, encoder):
    bad = DemoArrays(images=demos.images, states=demos.states[:, :20], actions=demos.actions,
                     instructions=demos.instructions, instruction_index=demos.instruction_index,
                     episode_index=demos.episode_index)
    with pytest.raises(ValueError, match="state dim 20 != policy.state_dim 22"):
        train_bc(bad, tmp_path / "run", config(), encoder=encoder)
    with pytest.raises(ValueError, match=r"image shape|image_size"):
        train_bc(demos, tmp_path / "run", config(policy={**POLICY, "image_size": 32}),
                 encoder=encoder)


def test_unknown_config_keys_are_rejected():
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(BCConfig, overrides=["learning_rate=1e-3"])
    with pytest.raises(ConfigError, match="n_layers"):
        load_config(BCConfig, overrides=["policy.n_layers=3"])
    with pytest.raises(ValueError, match="val_fraction"):
        load_config(BCConfig, overrides=["val_fraction=1.5"])


def test_validation_split_holds_out_whole_episodes():
    episode_index = np.repeat(np.arange(10), 5)
    train, val = split_episodes(episode_index, 0.2, seed=0)
    assert len(np.unique(episode_index[val])) == 2
    assert not set(episode_index[train]) & set(episode_index[val])
    train, val = split_episodes(np.zeros(5, int), 0.5, seed=0)
    assert len(val) == 0  # one episode: nothing to hold out


def test_augment_keeps_shape_and_range_and_is_seeded():
    images = torch.rand(4, 3, 16, 16)
    a = augment(images, np.random.default_rng(0), 2, 0.2)
    b = augment(images, np.random.default_rng(0), 2, 0.2)
    assert a.shape == images.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    torch.testing.assert_close(a, b)


def test_cli_rejects_an_unknown_override(tmp_path, capsys):
    from vla_sim.cli.main import main

    rc = main(["train", "bc", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "lrr=1"])
    assert rc == 2
    assert "lrr" in capsys.readouterr().err


def test_init_fn_runs_on_a_fresh_run_only(tmp_path, demos, encoder):
    calls = []

    def init(policy):
        calls.append(policy)
        with torch.no_grad():
            policy.action_head.log_std.fill_(-2.0)

    train_bc(demos, tmp_path / "run", config(steps_this_run=4), encoder=encoder, init_fn=init)
    train_bc(demos, tmp_path / "run", config(), resume=True, encoder=encoder, init_fn=init)
    assert len(calls) == 1
    log_std = load_policy(tmp_path / "run" / "last").action_head.log_std
    torch.testing.assert_close(log_std, torch.full((4,), -2.0))  # BC loss leaves log_std alone


def with_goal_states(demos: DemoArrays) -> DemoArrays:
    """Goal state learnable from the inputs: instruction side (x) and image brightness (y)."""
    side = np.where(demos.actions[:, 0] > 0, 0.3, -0.3)
    goal = np.stack([side, demos.actions[:, 1] * 0.2, np.full_like(side, 0.02)] * 2, axis=1)
    return DemoArrays(images=demos.images, states=demos.states, actions=demos.actions,
                      instructions=demos.instructions, instruction_index=demos.instruction_index,
                      episode_index=demos.episode_index, env_states=goal.astype(np.float32))


def test_aux_goal_state_loss_trains_a_head_that_predicts_the_goal(tmp_path, demos, encoder):
    data = with_goal_states(demos)
    train_bc(data, tmp_path / "run", config(steps=120, val_every_grad_steps=60, aux_weight=1.0),
             encoder=encoder)
    policy = load_policy(tmp_path / "run" / "last")
    assert policy.config.aux_dim == 6 and policy.aux_head is not None
    policy.text_encoder = encoder
    obs = {"image": torch.from_numpy(data.images["image"]),
           "state": torch.from_numpy(data.states),
           **{k: v[torch.from_numpy(data.instruction_index)]
              for k, v in encoder_features(encoder, data, policy).items()}}
    with torch.no_grad():
        pred = policy.aux_head.linear(policy.extractor(obs))
    target = (torch.from_numpy(data.env_states) - policy.aux_head.target_mean) \
        / policy.aux_head.target_std
    # x (instruction side) and y (brightness) are predicted well below their variance (1).
    mse = ((pred - target) ** 2).mean(0)
    assert mse[0] < 0.3 and mse[1] < 0.5, mse


def encoder_features(encoder, data, policy):
    from vla_sim.agents.training.bc import instruction_features

    return instruction_features(encoder, data.instructions, policy.config)


def test_aux_weight_without_goal_states_names_the_missing_feature(tmp_path, demos, encoder):
    with pytest.raises(ValueError, match="observation.environment_state"):
        train_bc(demos, tmp_path / "run", config(aux_weight=1.0), encoder=encoder)


def with_roles(demos: DemoArrays) -> DemoArrays:
    roles = {int(ep): {"task": "reach", "roles": {"object": "blue_cube" if ep % 2 else "red_cube"}}
             for ep in np.unique(demos.episode_index)}
    return DemoArrays(images=demos.images, states=demos.states, actions=demos.actions,
                      instructions=demos.instructions, instruction_index=demos.instruction_index,
                      episode_index=demos.episode_index, episode_roles=roles)


def test_instruction_augmentation_rephrases_each_episode_with_its_own_objects(demos):
    from vla_sim.agents.training.bc import instruction_alternatives

    data = with_roles(demos)
    instructions, table = instruction_alternatives(data, 4, seed=0)
    assert instructions[:len(data.instructions)] == data.instructions  # original ids kept
    assert table.shape == (len(data.states), 4) and (table[:, 0] >= 0).all()
    for step in (0, len(data.states) - 1):
        color = "blue" if data.episode_index[step] % 2 else "red"
        other = "red" if color == "blue" else "blue"
        texts = [instructions[i] for i in table[step] if i >= 0]
        assert texts and all(other not in t for t in texts)
    again = instruction_alternatives(data, 4, seed=0)
    assert again[0] == instructions and np.array_equal(again[1], table)


def test_instruction_augmentation_trains_and_needs_roles(tmp_path, demos, encoder):
    result = train_bc(with_roles(demos), tmp_path / "run",
                      config(steps=6, instruction_aug=3, instruction_aug_prob=0.5),
                      encoder=encoder)
    assert result.steps == 6 and np.isfinite(result.train_losses).all()
    with pytest.raises(ValueError, match="roles"):
        train_bc(demos, tmp_path / "run2", config(instruction_aug=3), encoder=encoder)


def test_chunk_indices_stay_inside_each_episode():
    from vla_sim.data.demos import chunk_indices

    ids, mask = chunk_indices(np.array([0, 0, 0, 1, 1]), 3)
    np.testing.assert_array_equal(ids, [[0, 1, 2], [1, 2, 2], [2, 2, 2], [3, 4, 4], [4, 4, 4]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 0]])


@pytest.mark.parametrize("head", ["gaussian", "flow"])
def test_action_chunking_bc_trains_validates_and_reloads(tmp_path, demos, encoder, head):
    result = train_bc(demos, tmp_path / "run", config(
        steps=60, val_every_grad_steps=30,
        policy={**POLICY, "action_chunk": 4, "action_steps": 2, "head": head}), encoder=encoder)
    assert np.mean(result.train_losses[-5:]) < np.mean(result.train_losses[:5])
    assert result.val_loss is not None and np.isfinite(result.val_loss)
    policy = load_policy(tmp_path / "run" / "last")
    assert policy.config.action_chunk == 4 and policy.config.action_steps == 2
    assert policy.action_head.plan(torch.zeros(3, policy.extractor.features_dim)).shape \
        == (3, 4, 4)


def test_ctrl_c_inside_an_update_saves_after_it_and_resumes_exactly(tmp_path, demos, encoder,
                                                                    monkeypatch):
    """SIGINT that lands mid-update is held until the update finishes; the checkpoint then
    matches the step, and --resume reproduces the uninterrupted run."""
    import signal

    from vla_sim.agents.policies.vla import VLAPolicy

    full = train_bc(demos, tmp_path / "full", config(checkpoint_every_grad_steps=100), encoder=encoder)
    calls = {"n": 0}
    original = VLAPolicy.bc_loss

    def loss_then_ctrl_c(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # inside step 3's update
            signal.raise_signal(signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VLAPolicy, "bc_loss", loss_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train_bc(demos, tmp_path / "run", config(checkpoint_every_grad_steps=100), encoder=encoder)
    monkeypatch.setattr(VLAPolicy, "bc_loss", original)
    saved = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    assert saved["meta"]["step"] == 3  # the interrupted update finished and was kept
    resumed = train_bc(demos, tmp_path / "run", config(checkpoint_every_grad_steps=100), resume=True,
                       encoder=encoder)
    assert resumed.train_losses == full.train_losses
