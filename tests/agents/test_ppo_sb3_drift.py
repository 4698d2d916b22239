"""WarmStartPPO.train is SB3's PPO.train plus the warm-start additions: it must be re-synced
whenever SB3's own update changes, and this test says when."""

import hashlib
import inspect

from stable_baselines3 import PPO

from vla_sim.agents.training.ppo import WarmStartPPO


def test_sb3_ppo_update_is_the_one_warm_start_ppo_follows():
    digest = hashlib.sha256(inspect.getsource(PPO.train).encode()).hexdigest()
    assert digest == WarmStartPPO.SB3_TRAIN_SHA256, (
        "stable-baselines3's PPO.train changed: re-apply the 'warm start' additions in "
        "vla_sim/agents/training/ppo.py to the new version, then update SB3_TRAIN_SHA256")


def test_warm_start_ppo_overrides_only_the_update():
    own = {name for name, value in vars(WarmStartPPO).items()
           if callable(value) and not name.startswith("__")}
    overridden = {name for name in own if hasattr(PPO, name)}
    assert overridden == {"train", "_update_learning_rate"}
