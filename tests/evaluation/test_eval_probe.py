"""The swap probe: every episode re-run on the same scene with the instruction naming another
object; the report puts the obeyed and original-task rates beside the success rate."""

import pytest
from eval_fake_env import BLIND_POLICY, NO_PROBE_ID

from vla_sim.evaluation.evaluator import evaluate
from vla_sim.evaluation.policies import PolicySpec
from vla_sim.evaluation.report import load_report, write_report


def test_probe_report_has_obeyed_and_original_task_rates_with_intervals(fake_config, tmp_path):
    cfg = fake_config(episodes=4, probe="swap")
    expert = evaluate(PolicySpec("expert"), cfg)
    cell = expert.cells[0]
    assert (cell.successes, cell.probe_episodes, cell.obeyed, cell.did_original) == (4, 4, 4, 0)
    assert cell.obeyed_rate == 1.0 and 0.4 < cell.obeyed_ci_low < 1.0 == cell.obeyed_ci_high
    assert cell.did_original_ci_low == 0.0 and 0.0 < cell.did_original_ci_high < 0.6
    for e in expert.episodes:
        assert e.probe_instruction != e.instruction and e.probe_obeyed and not e.probe_did_original

    # A policy that ignores the instruction succeeds normally, and does the original task anyway
    # under the swap: the probe is what tells it apart from the expert.
    blind = evaluate(PolicySpec("import", BLIND_POLICY), cfg).cells[0]
    assert (blind.successes, blind.obeyed, blind.did_original) == (4, 0, 4)

    paths = write_report(expert, tmp_path)
    report = load_report(paths["json"])
    c = report["cells"][0]
    assert (c["obeyed_rate"], c["did_original_rate"]) == (1.0, 0.0)
    assert {"probe_obeyed", "probe_did_original", "probe_instruction"} <= set(report["episodes"][0])
    md = paths["md"].read_text()
    assert "| obeyed under swap (95% CI) |" in md and "original task under swap" in md
    assert "4/4 = 100.0% [" in md and "0/4 = 0.0% [0.0%," in md
    assert "obeyed under swap" in paths["html"].read_text()


def test_probe_episodes_are_the_same_with_one_and_two_workers(fake_config):
    key = lambda r: (r.index, r.seed, r.probe_instruction, r.probe_obeyed,  # noqa: E731
                     r.probe_did_original, r.probe_length)
    one = evaluate(PolicySpec("expert"), fake_config(episodes=3, probe="swap", workers=1))
    two = evaluate(PolicySpec("expert"), fake_config(episodes=3, probe="swap", workers=2))
    assert [key(r) for r in one.episodes] == [key(r) for r in two.episodes]


def test_without_probe_the_report_has_no_probe_columns(fake_config, tmp_path):
    result = evaluate(PolicySpec("expert"), fake_config(episodes=1))
    assert result.cells[0].probe_episodes is None and result.episodes[0].probe_obeyed is None
    md = write_report(result, tmp_path)["md"].read_text()
    assert "obeyed" not in md


def test_env_without_the_swap_option_is_refused_before_any_episode(fake_config):
    seen = []
    with pytest.raises(ValueError, match="does not support the swap probe"):
        evaluate(PolicySpec("expert"), fake_config(env_ids=[NO_PROBE_ID], probe="swap"),
                 progress=seen.append)
    assert not seen


def test_unknown_probe_is_refused(fake_config):
    with pytest.raises(ValueError, match="probe must be one of"):
        fake_config(probe="shuffle")
