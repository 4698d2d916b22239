"""The evaluation report shows the training curves of the evaluated checkpoint's run."""

import base64

from vla_sim.evaluation.evaluator import evaluate
from vla_sim.evaluation.policies import PolicySpec
from vla_sim.evaluation.report import training_curves, write_report
from vla_sim.utils.plots import plot_success_curves

POINTS = [{"env_steps": 0, "wall_s": 0.0, "success": 0.1, "ci_low": 0.0, "ci_high": 0.4,
           "episodes": 10},
          {"env_steps": 100, "wall_s": 60.0, "success": 0.6, "ci_low": 0.3, "ci_high": 0.8,
           "episodes": 10}]


def test_report_embeds_and_links_the_runs_training_curves(fake_config, tmp_path):
    run = tmp_path / "runs" / "ppo"
    (run / "best").mkdir(parents=True)
    plot_success_curves(POINTS, run / "curves.png")
    result = evaluate(PolicySpec("expert"), fake_config(episodes=1))
    # the report of a checkpoint in that run (the policy itself is irrelevant to the layout)
    result.policy = {"kind": "checkpoint", "target": str(run / "best")}
    paths = write_report(result, tmp_path / "eval")
    html = paths["html"].read_text()
    png = base64.b64encode((run / "curves.png").read_bytes()).decode()
    assert "<h2>Training curves</h2>" in html and f"data:image/png;base64,{png}" in html
    md = paths["md"].read_text()
    assert "## Training curves" in md and "(../runs/ppo/curves.png)" in md


def test_report_without_curves_has_no_curves_section(fake_config, tmp_path):
    result = evaluate(PolicySpec("expert"), fake_config(episodes=1))
    assert training_curves(result.to_dict()) is None  # not a checkpoint
    result.policy = {"kind": "checkpoint", "target": str(tmp_path / "nothing" / "best")}
    paths = write_report(result, tmp_path / "eval")
    assert "Training curves" not in paths["html"].read_text()
    assert "Training curves" not in paths["md"].read_text()
