"""Resume's config check: a change is named; a setting added after the run started passes only
at its default."""

from vla_sim.agents.training.common import config_changes, config_defaults
from vla_sim.agents.training.configs import PPOConfig


def test_a_changed_setting_is_named_and_a_free_one_is_not():
    before = {"lr": 1e-4, "n_envs": 2, "bc": {"steps": 10, "log_every": 5}}
    now = {"lr": 3e-4, "n_envs": 4, "bc": {"steps": 10, "log_every": 9}}
    assert config_changes(before, now, ("n_envs", "bc.log_every")) == ["lr: 0.0001 -> 0.0003"]


def test_a_setting_newer_than_the_run_passes_at_its_default_only():
    defaults = {"lr": 1e-4, "bc_anchor": "kl", "bc": {"steps": 10, "ground": 0.0}}
    saved = {"lr": 1e-4, "bc": {"steps": 10}}  # written before bc_anchor and bc.ground existed
    same = {"lr": 1e-4, "bc_anchor": "kl", "bc": {"steps": 10, "ground": 0.0}}
    assert config_changes(saved, same, (), defaults=defaults) == []
    moved = {"lr": 1e-4, "bc_anchor": "mean", "bc": {"steps": 10, "ground": 1.0}}
    assert config_changes(saved, moved, (), defaults=defaults) == [
        "bc_anchor: None -> 'mean'", "bc.ground: None -> 1.0"]
    assert config_changes(saved, same, ()) == ["bc_anchor: None -> 'kl'",
                                               "bc: {'steps': 10} -> {'steps': 10, 'ground': 0.0}"]


def test_config_defaults_are_the_class_defaults():
    defaults = config_defaults(PPOConfig(lr=1e-3))
    assert defaults["lr"] == PPOConfig().lr and defaults["bc_anchor"] == "kl"
