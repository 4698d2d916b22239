"""Language-conditioned PyBullet Gymnasium environments."""

from vla_sim.envs.core import VLAEnv
from vla_sim.envs.registration import ENV_IDS, register_envs

__all__ = ["VLAEnv", "ENV_IDS", "register_envs"]
