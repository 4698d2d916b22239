"""benchmarks/randomization_ablation.py and the evaluator's YAML randomization cells: each
config is the harder level with exactly one factor group set back, and the evaluator runs it."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import yaml

from vla_sim.evaluation.evaluator import EvalConfig
from vla_sim.randomization.config import LEVELS, resolve_randomization

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from randomization_ablation import FACTOR_GROUPS, ablation_configs, main


def test_each_config_is_the_base_level_with_one_group_at_the_reference():
    hi, lo = dataclasses.asdict(LEVELS["medium"]), dataclasses.asdict(LEVELS["low"])
    configs = ablation_configs("medium", "low")
    differing = {g for g, fields in FACTOR_GROUPS.items() if any(hi[f] != lo[f] for f in fields)}
    assert set(configs) == differing and "textures" in configs
    for group, cfg in configs.items():
        for field, value in cfg.items():
            if field == "name":
                continue
            expected = lo[field] if field in FACTOR_GROUPS[group] else hi[field]
            assert value == expected, (group, field)
        assert resolve_randomization(cfg).textures == (group != "textures")


def test_every_field_that_tells_the_levels_apart_belongs_to_a_group():
    hi, lo = dataclasses.asdict(LEVELS["high"]), dataclasses.asdict(LEVELS["none"])
    grouped = {f for fields in FACTOR_GROUPS.values() for f in fields}
    assert {f for f in hi if f != "name" and hi[f] != lo[f]} <= grouped


def test_eval_cells_take_a_yaml_file_and_name_a_missing_or_bad_one(tmp_path):
    good = tmp_path / "lowcam.yaml"
    good.write_text(yaml.safe_dump(ablation_configs("medium", "low")["camera"]))
    assert EvalConfig(randomization=["low", str(good)]).randomization[1] == str(good)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        EvalConfig(randomization=[str(tmp_path / "nope.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "no_such_field": 1}))
    with pytest.raises((TypeError, ValueError), match="no_such_field"):
        EvalConfig(randomization=[str(bad)])
    with pytest.raises(ValueError, match="YAML"):
        EvalConfig(randomization=["extreme"])


def test_the_benchmark_evaluates_every_config_on_the_same_seeds(tmp_path, capsys):
    main(["--policy", "expert", "--env", "Reach", "--episodes", "2", "--workers", "1",
          "--out", str(tmp_path)])
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith(("low", "medium"))]
    assert len(rows) == 2 + len(ablation_configs("medium", "low"))
    assert all("100%" in row for row in rows)  # the scripted expert reaches on every level
    assert (tmp_path / "medium_textures_at_low.yaml").is_file()


def test_groups_limit_the_configs_and_an_unknown_group_is_named():
    assert set(ablation_configs("medium", "low", ["textures", "poses"])) == {"textures", "poses"}
    with pytest.raises(ValueError, match="glitter"):
        ablation_configs("medium", "low", ["glitter"])
