import json

from vla_sim.evaluation.evaluator import evaluate
from vla_sim.evaluation.policies import PolicySpec
from vla_sim.evaluation.report import load_report, write_report


def test_report_files_hold_tables_chart_frame_and_relative_video_links(fake_config, tmp_path):
    cfg = fake_config(episodes=2, video_dir=str(tmp_path / "videos"), record="first", videos=2)
    result = evaluate(PolicySpec("expert"), cfg)
    paths = write_report(result, tmp_path / "out")
    report = load_report(paths["json"])
    assert report["seeds"] == [e["seed"] for e in report["episodes"]]
    assert report["policy"] == {"kind": "expert", "target": None}
    assert report["env_config"]["base_seed"] == cfg.base_seed
    assert set(report["fingerprint"]["versions"]) >= {"python", "pybullet", "numpy", "torch",
                                                      "gymnasium", "vla_sim"}
    html = paths["html"].read_text()
    assert "<svg" in html and "data:image/png;base64," in html
    assert 'href="../videos/' in html  # relative to the report folder
    md = paths["md"].read_text()
    assert "| success rate |" in md.replace("successes | success rate", "| success rate")
    assert "2/2" in md and "100.0%" in md


def test_load_report_rejects_other_json(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"hello": 1}))
    import pytest

    with pytest.raises(ValueError, match="not a vla-sim eval report"):
        load_report(tmp_path)
