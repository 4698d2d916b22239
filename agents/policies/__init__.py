"""Learned policies: the VLA network (features extractor + heads) and its checkpoints."""

from .checkpoint import CheckpointMismatchError, load_policy, save_policy
from .config import VLAPolicyConfig
from .vla import VLAFeaturesExtractor, VLAPolicy, build_observation_space

__all__ = [
    "CheckpointMismatchError", "VLAFeaturesExtractor", "VLAPolicy", "VLAPolicyConfig",
    "build_observation_space", "load_policy", "save_policy",
]
