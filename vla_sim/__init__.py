"""vla-sim: train and evaluate Vision-Language-Action policies with PyBullet in the loop.

Importing the package registers the Gymnasium ids ``vla_sim/Reach-v0``, ``vla_sim/Push-v0``,
``vla_sim/PickPlace-v0``, ``vla_sim/Stack-v0`` and ``vla_sim/MultiTask-v0``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vla-sim")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

from vla_sim.envs.registration import ENV_IDS, register_envs

register_envs()

__all__ = ["ENV_IDS", "register_envs", "__version__"]
