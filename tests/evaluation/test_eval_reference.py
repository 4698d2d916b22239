import json

import eval_fake_env
from eval_fake_env import FAKE_EXPERT

from vla_sim.cli.main import main
from vla_sim.evaluation.evaluator import evaluate
from vla_sim.evaluation.policies import PolicySpec
from vla_sim.evaluation.reference import check_scenes, reference_config
from vla_sim.evaluation.report import load_report, write_report
from vla_sim.utils.fingerprint import fingerprint, fingerprint_differences


def _old_report(fake_config, tmp_path):
    write_report(evaluate(PolicySpec("expert"), fake_config(episodes=3)), tmp_path / "old")
    return load_report(tmp_path / "old" / "report.json")


def test_same_config_gives_identical_scenes(fake_config, tmp_path):
    old = _old_report(fake_config, tmp_path)
    check = check_scenes(reference_config(old, expert_factory=FAKE_EXPERT), old)
    assert check.identical and check.compared == 3


def test_changed_base_seed_is_detected_as_different_scenes(fake_config, tmp_path):
    old = _old_report(fake_config, tmp_path)
    check = check_scenes(reference_config(old, base_seed=12345, expert_factory=FAKE_EXPERT), old)
    assert not check.identical and len(check.differing) == 3


def test_cli_reference_prints_scenes_before_results(fake_config, tmp_path, capsys):
    _old_report(fake_config, tmp_path)
    ref = str(tmp_path / "old" / "report.json")
    assert main(["eval", "--reference", ref, "--policy", "random", "--out",
                 str(tmp_path / "new"), "--videos", "0", "--expert-factory", FAKE_EXPERT]) == 0
    out = capsys.readouterr().out
    assert out.index("scenes: IDENTICAL") < out.index("| env |")
    assert "versions: same fingerprint" in out
    # expert 3/3 vs random 0/3: -100 points, yet 3 episodes leave the intervals overlapping
    assert "diff -100.0%, intervals overlap" in out
    new = json.loads((tmp_path / "new" / "report.json").read_text())
    assert new["reference"]["scenes"]["identical"] is True
    assert new["env_config"] == load_report(ref)["env_config"]

    assert main(["eval", "--reference", ref, "--seed", "7", "--out", str(tmp_path / "moved"),
                 "--videos", "0", "--expert-factory", FAKE_EXPERT]) == 0
    assert "scenes: DIFFERENT in 3/3 episodes" in capsys.readouterr().out


def test_cli_refuses_mismatched_policy_with_both_spaces(tmp_path, capsys):
    rc = main(["eval", "--env", eval_fake_env.FAKE_ID, "--policy",
               f"import:{eval_fake_env.__name__}:make_wrong_space_policy", "--out",
               str(tmp_path / "x"), "--expert-factory", FAKE_EXPERT, "--image-size", "32"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "policy observation_space" in err and "env    observation_space" in err
    assert not (tmp_path / "x" / "report.json").exists()


def test_fingerprint_differences_name_changed_versions():
    fp = fingerprint()
    old = json.loads(json.dumps(fp))
    old["versions"]["pybullet"] = "3.0.0"
    assert fingerprint_differences(old, fp) == [("versions.pybullet", "3.0.0",
                                                 fp["versions"]["pybullet"])]
    assert fp["renderer"] == "ER_TINY_RENDERER"


def test_a_reference_report_never_chooses_code_to_import(fake_config, tmp_path, capsys):
    """A published report.json names data, not code: neither its expert factory nor an
    'import' policy is imported unless the user names the same module on the command line."""
    _old_report(fake_config, tmp_path)
    path = tmp_path / "old" / "report.json"
    report = json.loads(path.read_text())
    report["config"]["expert_factory"] = "webbrowser:open"
    report["policy"] = {"kind": "import", "target": "webbrowser:open"}
    path.write_text(json.dumps(report))
    import webbrowser

    calls = []
    original = webbrowser.open
    webbrowser.open = lambda *a, **k: calls.append(a)
    try:
        rc = main(["eval", "--reference", str(path), "--policy", "random", "--out",
                   str(tmp_path / "new"), "--videos", "0"])
        assert rc == 2 and "webbrowser:open" in capsys.readouterr().err
        report["config"]["expert_factory"] = FAKE_EXPERT
        path.write_text(json.dumps(report))
        rc = main(["eval", "--reference", str(path), "--out", str(tmp_path / "new2"),
                   "--videos", "0", "--expert-factory", FAKE_EXPERT])
        assert rc == 2 and "pass --policy" in capsys.readouterr().err
    finally:
        webbrowser.open = original
    assert calls == []

