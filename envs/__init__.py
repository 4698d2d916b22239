"""Language-conditioned PyBullet Gymnasium environments.

``VLAEnv`` is imported on first use, so ``import vla_sim`` (which registers the ids) does not
load PyBullet.
"""

from vla_sim.envs.registration import ENV_IDS, register_envs

__all__ = ["VLAEnv", "ENV_IDS", "register_envs"]


def __getattr__(name: str):
    if name == "VLAEnv":
        from vla_sim.envs.core import VLAEnv

        return VLAEnv
    raise AttributeError(f"module 'vla_sim.envs' has no attribute {name!r}")
