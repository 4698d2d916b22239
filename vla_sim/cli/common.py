"""What several ``vla-sim`` commands share: opening datasets, env ids, in-training success checks."""

from __future__ import annotations

from typing import Any, Callable


def add_eval_check_arguments(parser: Any) -> None:
    """``--eval-env`` / ``--eval-episodes``: the in-sim success checks a trainer runs."""
    parser.add_argument("--eval-env", default=None,
                        help="env id for in-sim success checks (default: the dataset's env, if "
                             "recorded); 'none' disables them")
    parser.add_argument("--eval-episodes", type=int, default=10,
                        help="episodes per in-sim check (eval seeds, train instructions)")


def open_training_dataset(root: str, max_episodes: int | None = None):
    """The dataset at ``root`` as a torch Dataset, optionally only its first ``max_episodes``."""
    from vla_sim.data.torch_dataset import VLADataset

    ds = VLADataset(root)
    if max_episodes is not None:
        ds = VLADataset(root, episodes=list(range(min(max_episodes, ds.reader.num_episodes))))
    return ds


def env_id(name: str) -> str:
    from vla_sim.envs.registration import resolve_env_id

    return resolve_env_id(name)


def task_env_id(task: str) -> str:
    """Task name (``reach``) -> its single-task env id (``vla_sim/Reach-v0``)."""
    from vla_sim.envs.registration import ENV_IDS

    for eid, kwargs in ENV_IDS.items():
        if kwargs.get("task") == task:
            return eid
    raise ValueError(f"no env id for task {task!r}; known: "
                     f"{sorted(k['task'] for k in ENV_IDS.values())}")


def policy_env_kwargs(policy_cfg: Any, randomization: Any = None) -> dict[str, Any]:
    """``gym.make`` arguments that render what ``policy_cfg`` reads (cameras, image size)."""
    kwargs: dict[str, Any] = {"image_size": policy_cfg.image_size,
                              "cameras": tuple(policy_cfg.cameras)}
    if randomization is not None:
        kwargs["randomization"] = randomization
    return kwargs


def success(policy: Any, env: str, episodes: int, env_kwargs: dict[str, Any]) -> float:
    """The in-training success check (the evaluator's episode loop on evaluation seeds)."""
    from vla_sim.evaluation.success import success_rate

    return success_rate(policy, env, episodes, env_kwargs)


def dataset_eval_fn(dataset: Any, eval_env: str | None, episodes: int, policy_cfg: Any
                    ) -> Callable[[Any], float] | None:
    """``policy -> success rate`` on the env the dataset was collected in (as ``vla-sim
    collect`` recorded it: env, robot, randomization), or on ``eval_env``; None when neither
    is known, ``eval_env == 'none'`` or ``episodes < 1``."""
    collect = dataset.reader.info.get("vla_sim", {}).get("collect", {})
    target = eval_env or collect.get("env")
    if not target or target == "none" or episodes < 1:
        return None
    kwargs = policy_env_kwargs(policy_cfg)
    for key in ("robot", "randomization"):
        if key in collect:
            kwargs[key] = collect[key]
    target = env_id(target)
    return lambda policy: success(policy, target, episodes, kwargs)
