"""Every policy class, and the checkpoint registry that rebuilds them by ``policy_type``.

    from vla_sim.agents.policies import load_policy
    policy = load_policy("runs/bc/best")   # VLAPolicy, MultiHeadVLAPolicy or LatentActionPolicy
    action = policy.act(obs)

Names are imported on first use, so ``vla_sim.agents.policies.config`` (plain dataclasses) loads
without torch.
"""

from importlib import import_module

_EXPORTS = {
    "CheckpointMismatchError": "checkpoint_meta", "POLICY_TYPES": "checkpoint_meta",
    "read_checkpoint_config": "checkpoint_meta", "save_policy": "checkpoint",
    "VLAPolicyConfig": "config", "load_policy": "registry",
    "VLAFeaturesExtractor": "vla", "VLAPolicy": "vla", "build_observation_space": "vla",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
