"""Every policy class, and the checkpoint registry that rebuilds them by ``policy_type``.

    from vla_sim.agents.policies import load_policy
    policy = load_policy("runs/bc/best")   # VLAPolicy, MultiHeadVLAPolicy or LatentActionPolicy
    action = policy.act(obs)
"""

from .checkpoint import (
    POLICY_TYPES,
    CheckpointMismatchError,
    read_checkpoint_config,
    save_policy,
)
from .config import VLAPolicyConfig
from .registry import load_policy
from .vla import VLAFeaturesExtractor, VLAPolicy, build_observation_space

__all__ = [
    "CheckpointMismatchError", "POLICY_TYPES", "VLAFeaturesExtractor", "VLAPolicy",
    "VLAPolicyConfig", "build_observation_space", "load_policy", "read_checkpoint_config",
    "save_policy",
]
