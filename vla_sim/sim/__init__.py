"""Simulation layer: one private PyBullet client per env, robots, cameras, scene."""

from vla_sim.utils.quiet import quiet_stdout

with quiet_stdout("stderr"):  # pybullet prints its build time to stderr on import
    import pybullet  # noqa: F401
