"""The evaluator on the real PyBullet Reach env."""

import pytest

import vla_sim  # noqa: F401,E402  (registers the env ids)
from vla_sim.evaluation.evaluator import EvalConfig, evaluate
from vla_sim.evaluation.policies import PolicySpec


def _config(**kw):
    base = dict(env_ids=["vla_sim/Reach-v0"], episodes=4, splits=["train"], randomization=["low"],
                image_size=32, render_size=64, max_episode_steps=30)
    base.update(kw)
    return EvalConfig(**base)


def test_reach_expert_succeeds_and_random_does_not():
    expert = evaluate(PolicySpec("expert"), _config()).cells[0]
    assert expert.successes == expert.episodes  # the scripted Reach expert never misses
    assert expert.alignment_cos == pytest.approx(1.0)
    random = evaluate(PolicySpec("random"), _config(max_episode_steps=20)).cells[0]
    assert random.successes <= 1
    assert random.alignment_cos < 0.5


def test_reach_workers_1_and_2_give_the_same_episodes():
    cfg = dict(episodes=3, splits=["train", "heldout"])
    one = evaluate(PolicySpec("expert"), _config(workers=1, **cfg))
    two = evaluate(PolicySpec("expert"), _config(workers=2, **cfg))
    key = lambda r: (r.cell, r.index, r.seed, r.first_frame_hash, r.randomization_hash,  # noqa
                     r.success, r.length, r.instruction)
    assert [key(r) for r in one.episodes] == [key(r) for r in two.episodes]
    assert len({r.first_frame_hash for r in one.episodes if r.split == "train"}) == 3


def test_reach_video_has_one_frame_per_step_plus_reset_and_hold(tmp_path):
    from vla_sim.evaluation.video import HOLD_S
    from vla_sim.utils.video import read_video

    cfg = _config(episodes=1, video_dir=str(tmp_path), record="first", videos=1)
    record = evaluate(PolicySpec("expert"), cfg).episodes[0]
    frames = read_video(tmp_path / record.video)
    assert len(frames) == record.length + 1 + int(HOLD_S * cfg.fps)
    assert frames[0].shape == (64, 64, 3)


def test_reach_swap_probe_expert_obeys_the_swapped_instruction():
    # the scripted expert reads the (swapped) roles, so it obeys; the original task stays undone
    cell = evaluate(PolicySpec("expert"), _config(episodes=2, probe="swap")).cells[0]
    assert (cell.successes, cell.obeyed, cell.did_original) == (2, 2, 0)


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory):
    from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, save_policy

    return save_policy(VLAPolicy(VLAPolicyConfig(image_size=32)),
                       tmp_path_factory.mktemp("ckpt") / "policy")


def test_checkpoint_policy_runs_from_its_directory(untrained_checkpoint):
    from vla_sim.evaluation.policies import parse_policy

    result = evaluate(parse_policy(str(untrained_checkpoint)),
                      _config(episodes=1, max_episode_steps=3))
    assert result.episodes[0].length == 3
    assert result.policy["kind"] == "checkpoint"


def test_checkpoint_with_other_image_size_is_refused_naming_both_spaces(untrained_checkpoint):
    from vla_sim.evaluation.policies import parse_policy

    ran = []
    with pytest.raises(ValueError, match="observation_space") as err:
        evaluate(parse_policy(str(untrained_checkpoint)), _config(image_size=48),
                 progress=ran.append)
    assert "(32, 32, 3)" in str(err.value) and "(48, 48, 3)" in str(err.value)
    assert ran == []


def test_cli_eval_renders_the_checkpoints_cameras_and_size(tmp_path):
    """A front+wrist, 32 px checkpoint evaluates without --cameras/--image-size flags."""
    import json

    from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, save_policy

    from vla_sim.cli.main import main

    ckpt = save_policy(VLAPolicy(VLAPolicyConfig(image_size=32, cameras=["front", "wrist"])),
                       tmp_path / "policy")
    rc = main(["eval", "--policy", str(ckpt), "--env", "Reach", "--episodes", "1",
               "--split", "train", "--videos", "0", "--max-steps", "2", "--no-alignment",
               "--out", str(tmp_path / "eval")])
    assert rc == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["config"]["cameras"] == ["front", "wrist"]
    assert report["config"]["image_size"] == 32
