import json

import eval_fake_env
import numpy as np
import pytest
from eval_fake_env import STALLING_POLICY, WRONG_POLICY

from vla_sim.evaluation.evaluator import EvalConfig, evaluate, randomization_hash
from vla_sim.evaluation.policies import PolicySpec, RandomPolicy, parse_policy
from vla_sim.evaluation.report import write_report
from vla_sim.utils.seeding import EVAL_BASE_SEED, episode_seed


def test_expert_solves_every_episode_and_random_fails(fake_config):
    cfg = fake_config(episodes=5)
    expert = evaluate(PolicySpec("expert"), cfg)
    cell = expert.cells[0]
    assert (cell.successes, cell.episodes) == (5, 5)
    assert cell.alignment_cos == pytest.approx(1.0)
    assert cell.mean_time_to_success == pytest.approx(cell.mean_length)
    random = evaluate(PolicySpec("random"), cfg)
    assert random.cells[0].successes == 0
    assert abs(random.cells[0].alignment_cos) < 0.5  # random actions are not the expert's


def test_episode_i_uses_episode_seed_of_base_seed(fake_config):
    result = evaluate(PolicySpec("expert"), fake_config(episodes=3, splits=["train", "heldout"]))
    assert EvalConfig().base_seed == EVAL_BASE_SEED
    for record in result.episodes:
        assert record.seed == episode_seed(EVAL_BASE_SEED, record.index)
    assert [(r.split, r.index) for r in result.episodes] == \
        [("train", 0), ("train", 1), ("train", 2), ("heldout", 0), ("heldout", 1), ("heldout", 2)]
    # Same seeds in both splits: same scenes, different instruction phrasing.
    by = {(r.split, r.index): r for r in result.episodes}
    assert by[("train", 0)].randomization_hash == by[("heldout", 0)].randomization_hash
    assert by[("train", 0)].instruction != by[("heldout", 0)].instruction


def test_one_and_two_workers_give_the_same_episodes(fake_config):
    one = evaluate(PolicySpec("expert"), fake_config(episodes=4, workers=1))
    two = evaluate(PolicySpec("expert"), fake_config(episodes=4, workers=2))
    key = lambda r: (r.cell, r.index, r.seed, r.first_frame_hash, r.randomization_hash,  # noqa
                     r.success, r.length)
    assert [key(r) for r in one.episodes] == [key(r) for r in two.episodes]


def test_same_seeds_give_the_same_report_twice(fake_config, tmp_path):
    cfg = fake_config(episodes=3)
    texts = []
    for name in ("a", "b"):
        write_report(evaluate(PolicySpec("random"), cfg), tmp_path / name)
        report = json.loads((tmp_path / name / "report.json").read_text())
        report.pop("timing")
        texts.append(json.dumps(report, sort_keys=True))
    assert texts[0] == texts[1]


def test_mismatched_policy_is_refused_before_any_episode(fake_config):
    ran = []
    with pytest.raises(ValueError) as err:
        evaluate(PolicySpec("import", WRONG_POLICY), fake_config(), progress=ran.append)
    assert ran == []
    msg = str(err.value)
    assert "(16, 16, 3)" in msg and "(32, 32, 3)" in msg  # both observation spaces
    assert "action_space" in msg and "(3,)" in msg and "(4,)" in msg  # both action spaces


def test_random_policy_is_seeded_per_episode():
    from gymnasium import spaces

    policy = RandomPolicy(spaces.Box(-1, 1, (4,), np.float32))
    policy.reset(seed=3)
    a = policy.act({})
    policy.act({})
    policy.reset(seed=3)
    assert np.array_equal(a, policy.act({}))
    assert a.dtype == np.float32 and np.all(np.abs(a) <= 1)


def test_bad_config_and_policy_values_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="splits"):
        EvalConfig(splits=["test"])
    with pytest.raises(ValueError, match="record"):
        EvalConfig(record="some")
    with pytest.raises(FileNotFoundError, match="expert"):
        parse_policy(str(tmp_path / "missing"))


def test_randomization_hash_is_canonical():
    assert randomization_hash({"a": 1, "b": [0.5]}) == randomization_hash({"b": [0.5], "a": 1})
    assert randomization_hash({"a": 1}) != randomization_hash({"a": 2})


def test_only_recorded_episodes_render(fake_config, tmp_path):
    eval_fake_env.FakeReachEnv.total_renders = 0
    cfg = fake_config(episodes=3, video_dir=str(tmp_path), record="first", videos=1)
    result = evaluate(PolicySpec("expert"), cfg)
    recorded = [r for r in result.episodes if r.video]
    assert [r.index for r in recorded] == [0]
    # one render per step plus the reset frame, for the recorded episode only
    assert eval_fake_env.FakeReachEnv.total_renders == recorded[0].length + 1


def test_failures_are_rerun_with_rendering_for_their_video(fake_config, tmp_path):
    cfg = fake_config(episodes=3, video_dir=str(tmp_path), record="failures", videos=2)
    result = evaluate(PolicySpec("random"), cfg)
    assert [r.index for r in result.episodes if r.video] == [0, 1]
    for r in result.episodes:
        if r.video:
            assert (tmp_path / r.video).is_file()
    assert result.cells[0].grid_video and (tmp_path / result.cells[0].grid_video).is_file()


def test_policy_without_declared_spaces_is_probed_for_its_action_shape(fake_config):
    ran = []
    with pytest.raises(ValueError, match=r"actions have shape \(2,\).*Box\(-1.0, 1.0, \(4,\)"):
        evaluate(short_action_policy, fake_config(), progress=ran.append)
    assert ran == []


class _ShortActions:
    def act(self, obs, deterministic=True):
        return np.zeros(2, np.float32)


def short_action_policy(env):
    return _ShortActions()


def test_sampled_actions_leave_a_stall_and_repeat_for_the_same_seeds(fake_config, tmp_path):
    mode = evaluate(PolicySpec("import", STALLING_POLICY), fake_config(episodes=4))
    assert mode.cells[0].successes == 0  # the mode holds still
    cfg = fake_config(episodes=4, sample_actions=True)
    runs = [evaluate(PolicySpec("import", STALLING_POLICY), cfg) for _ in range(2)]
    assert runs[0].cells[0].successes == 4
    lengths = [[r.length for r in run.episodes] for run in runs]
    assert lengths[0] == lengths[1] and len(set(lengths[0])) > 1  # seeded per episode
    write_report(runs[0], tmp_path / "sampled")
    write_report(mode, tmp_path / "mode")
    assert "actions: sampled" in (tmp_path / "sampled" / "report.md").read_text()
    assert "actions: the policy's mode" in (tmp_path / "mode" / "report.md").read_text()
