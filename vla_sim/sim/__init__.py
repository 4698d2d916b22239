"""Simulation layer: one private PyBullet client per env, robots, cameras, scene."""

from vla_sim.utils.quiet import quiet_stdout

with quiet_stdout():  # pybullet prints its build time to stdout on import
    import pybullet  # noqa: F401
