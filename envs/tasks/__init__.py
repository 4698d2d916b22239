"""Tasks by name. ``multitask`` is handled by the env: it draws one of these per episode."""

from vla_sim.envs.tasks.base import SceneObject, Task, TaskInstance
from vla_sim.envs.tasks.pick_place import PickPlaceTask
from vla_sim.envs.tasks.push import PushTask
from vla_sim.envs.tasks.reach import ReachTask
from vla_sim.envs.tasks.stack import StackTask

TASKS: dict[str, type[Task]] = {
    "reach": ReachTask,
    "push": PushTask,
    "pick_place": PickPlaceTask,
    "stack": StackTask,
}

__all__ = ["TASKS", "Task", "TaskInstance", "SceneObject", "ReachTask", "PushTask",
           "PickPlaceTask", "StackTask"]
