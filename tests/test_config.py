"""One config path: --flags generated from a dataclass, a YAML file and key=value overrides."""

import argparse
from dataclasses import dataclass, field

import pytest

from vla_sim.config import ConfigError, add_config_arguments, config_from_args, field_docs, load_config


@dataclass
class Toy:
    steps: int = 10
    """Gradient steps."""
    lr: float = 0.1  # learning rate
    name: str = "toy"
    cameras: list[str] = field(default_factory=lambda: ["front"])
    cap: int | None = None
    verbose: bool = True
    share: float = 0.5
    """Kept at 100% success."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


def _parse(argv):
    p = argparse.ArgumentParser()
    add_config_arguments(p, Toy)
    return config_from_args(Toy, p.parse_args(argv))


def test_flags_come_from_the_dataclass_with_its_types_and_help():
    p = argparse.ArgumentParser()
    add_config_arguments(p, Toy)
    text = p.format_help()
    assert "--steps STEPS" in text and "Gradient steps." in text and "learning rate" in text
    assert "--no-verbose" in text
    assert field_docs(Toy) == {"steps": "Gradient steps.", "lr": "learning rate",
                               "share": "Kept at 100% success."}
    assert "Kept at 100% success. (default: 0.5)" in " ".join(text.split())  # % survives argparse


def test_defaults_then_file_then_overrides_then_flags(tmp_path):
    assert _parse([]) == Toy()
    cfg_file = tmp_path / "toy.yaml"
    cfg_file.write_text("steps: 20\nlr: 0.5\nname: file\n")
    cfg = _parse(["--config", str(cfg_file), "lr=0.7", "name=override", "--name", "flag",
                  "--cameras", "front,wrist", "--cap", "3", "--no-verbose"])
    assert (cfg.steps, cfg.lr, cfg.name) == (20, 0.7, "flag")
    assert cfg.cameras == ["front", "wrist"] and cfg.cap == 3 and cfg.verbose is False
    assert _parse(["--cap", "none"]).cap is None


def test_bad_values_and_unknown_keys_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="steps must be >= 1"):
        _parse(["--steps", "0"])
    with pytest.raises(ConfigError, match="stepz"):
        _parse(["stepz=3"])
    with pytest.raises(SystemExit):
        _parse(["--steps", "many"])


def test_a_malformed_yaml_file_is_one_line_naming_the_file_and_place(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 3\nlr: [0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(Toy, bad)
    message = str(info.value)
    assert str(bad) in message and "line" in message and "\n" not in message


@pytest.mark.parametrize("cls_name, key, value, message", [
    ("BCConfig", "weight_decay", "-5", "weight_decay must be"),
    ("BCConfig", "min_lr_ratio", "7", "min_lr_ratio must be in"),
    ("BCConfig", "lr", "inf", "lr must be a finite number"),
    ("BCConfig", "lr", "nan", "lr must be a finite number"),
    ("BCConfig", "grad_clip", "-1", "grad_clip must be"),
    ("PPOConfig", "max_episode_steps", "-1", "max_episode_steps must be"),
    ("PPOConfig", "value_lr", "inf", "value_lr must be a finite number"),
    ("ReinforceConfig", "max_grad_norm", "-0.5", "max_grad_norm must be"),
    ("CollectConfig", "noise", "nan", "noise must be a finite number"),
    ("CollectConfig", "max_attempts", "0", "max_attempts must be"),
])
def test_config_ranges_are_checked_by_name(cls_name, key, value, message):
    from vla_sim.agents.training import configs
    from vla_sim.data.collect import CollectConfig

    cls = CollectConfig if cls_name == "CollectConfig" else getattr(configs, cls_name)
    with pytest.raises(ValueError, match=message):
        load_config(cls, overrides=[f"{key}={value}"])
