"""``vla-sim train continual | multitask | latent``. Wiring only; the logic lives in
``vla_sim.agents.training``.

    vla-sim train continual --policy CKPT --data NEW --replay-data OLD [OLD ...] --out DIR
        [--eval-env Reach --eval-env Push] [--config continual.yaml] [key=value ...]
    vla-sim train multitask --data D [D ...] --out DIR --heads per-task|shared
        [--task-weights reach=1,push=2] [--config bc.yaml] [key=value ...]
    vla-sim train latent --data D --action-ae AE_DIR --out RUN [--config bc.yaml] [key=value ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vla_sim.agents.training.configs import BCConfig
from vla_sim.cli.common import (
    env_id,
    open_training_dataset,
    policy_env_kwargs,
    success,
    task_env_id,
)
from vla_sim.config import add_config_arguments, config_from_args
from vla_sim.randomization.config import LEVELS


def _common(p: argparse.ArgumentParser, cls: type) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--max-episodes", type=int, default=None,
                   help="use only the first N episodes of each dataset")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per success check")
    p.add_argument("--randomization", default="low", choices=list(LEVELS),
                   help="randomization level of the success checks")
    add_config_arguments(p, cls)


# ---------------------------------------------------------------------------------- parsers
def add_extra_trainers(sub) -> None:
    """Add ``continual``, ``multitask`` and ``latent`` to ``vla-sim train``'s subparsers."""
    add_continual_parser(sub)
    add_multitask_parser(sub)
    add_latent_parser(sub)


def add_continual_parser(sub) -> None:
    p = sub.add_parser("continual", help="fine-tune on a new task with reservoir replay",
                       description="Fine-tune a trained policy on a new task's demonstrations, "
                                   "replaying earlier tasks' data from a reservoir buffer at a "
                                   "lower LR; prints a forgetting report.")
    p.add_argument("--policy", required=True, help="trained policy checkpoint folder")
    p.add_argument("--data", required=True, help="new task's dataset folder")
    p.add_argument("--replay-data", nargs="*", default=[], help="earlier tasks' dataset folders")
    p.add_argument("--eval-env", action="append", default=[],
                   help="env to measure before/after (repeat: one per task; e.g. Reach)")
    from vla_sim.agents.training.configs import ContinualConfig

    _common(p, ContinualConfig)
    p.set_defaults(func=run_continual)


def add_multitask_parser(sub) -> None:
    p = sub.add_parser("multitask", help="multi-task BC: per-task or shared action heads",
                       description="Behaviour cloning on several tasks with a shared encoder and "
                                   "per-task action heads (or one shared head), task-weighted loss.")
    p.add_argument("--data", required=True, nargs="+", help="dataset folder(s); tasks from episodes")
    add_multitask_options(p)
    _common(p, BCConfig)
    p.add_argument("--no-eval", action="store_true", help="skip the per-task success check")
    p.set_defaults(func=run_multitask)


def add_multitask_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--heads", default="per-task", choices=["per-task", "shared"],
                   help="per-task action heads on a shared encoder, or one shared head")
    p.add_argument("--task-weights", default=None,
                   help="loss weight per task, e.g. reach=1,push=2 (default 1 each)")


def add_latent_parser(sub) -> None:
    p = sub.add_parser("latent", help="BC that predicts action-chunk latents (see pretrain action)",
                       description="Behaviour cloning of a policy whose head predicts the latent of "
                                   "a pre-trained action-chunk autoencoder.")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--action-ae", required=True, help="folder written by vla-sim pretrain action")
    _common(p, BCConfig)
    p.set_defaults(func=run_latent)


# --------------------------------------------------------------------------------- commands
def run_continual(args: argparse.Namespace) -> int:
    from vla_sim.agents.policies import load_policy, save_policy
    from vla_sim.agents.training.continual import (
        ContinualConfig,
        finetune_with_replay,
        forgetting_report,
        format_forgetting_report,
    )
    from vla_sim.data.demos import DemoArrays
    from vla_sim.utils.io import atomic_write_json

    cfg = config_from_args(ContinualConfig, args)
    policy = load_policy(args.policy)
    new_ds = open_training_dataset(args.data, args.max_episodes)
    new = DemoArrays.fromopen_training_dataset(new_ds)
    old = [DemoArrays.fromopen_training_dataset(open_training_dataset(d, args.max_episodes)) for d in args.replay_data]
    envs = [env_id(e) for e in args.eval_env]
    kwargs = policy_env_kwargs(policy.config, args.randomization)
    before = {e: success(policy, e, args.eval_episodes, kwargs) for e in envs}
    res = finetune_with_replay(policy, new, old, cfg)
    after = {e: success(policy, e, args.eval_episodes, kwargs) for e in envs}
    collect_env = new_ds.reader.info.get("vla_sim", {}).get("collect", {}).get("env")
    new_env = env_id(collect_env) if collect_env else None  # labelled "gain", not "forgetting"
    report = forgetting_report(before, after, new_task=new_env)
    save_policy(policy, args.out, meta={"trainer": "continual", "report": report,
                                         "replay_per_batch": res.replay_per_batch})
    atomic_write_json(Path(args.out) / "forgetting.json", report)
    print(f"continual: {cfg.steps} steps at lr {cfg.lr_scale * cfg.bc.lr:.2e}, "
          f"{res.replay_per_batch}/{cfg.bc.batch_size} replayed per batch "
          f"(buffer {0 if res.buffer is None else len(res.buffer)} of "
          f"{0 if res.buffer is None else res.buffer.seen} seen); final loss "
          f"{res.train_losses[-1]:.4f}; saved to {args.out}")
    if envs:
        print(format_forgetting_report(report))
    return 0


def run_multitask(args: argparse.Namespace) -> int:
    from vla_sim.agents.policies.multihead import MultiHeadVLAPolicy
    from vla_sim.agents.training.bc import BCConfig
    from vla_sim.agents.training.multitask import (
        MultiTaskConfig,
        MultiTaskData,
        read_task_weights,
        train_multitask,
    )
    from vla_sim.utils.io import atomic_write_json

    bc = config_from_args(BCConfig, args)
    cfg = MultiTaskConfig(heads=args.heads, task_weights=read_task_weights(args.task_weights), bc=bc)
    data = MultiTaskData.concat([MultiTaskData.fromopen_training_dataset(open_training_dataset(d, args.max_episodes))
                                 for d in args.data])
    res = train_multitask(data, cfg, out_dir=args.out)
    per_task = {}
    if not args.no_eval and args.eval_episodes > 0:
        kwargs = policy_env_kwargs(bc.policy, args.randomization)
        for task in data.task_names:
            per_task[task] = success(res.policy, task_env_id(task), args.eval_episodes, kwargs)
    atomic_write_json(Path(args.out) / "multitask.json",
                      {"heads": args.heads, "tasks": data.task_names, "success": per_task,
                       "val_loss_per_task": res.val_loss_per_task,
                       "classifier_accuracy": res.classifier_accuracy})
    kind = "per-task heads" if isinstance(res.policy, MultiHeadVLAPolicy) else "shared head"
    print(f"multitask ({kind}) on {data.task_names}: final loss {res.train_losses[-1]:.4f}; "
          f"val loss per task {res.val_loss_per_task}; success per task {per_task}; "
          f"saved to {args.out}")
    return 0


def run_latent(args: argparse.Namespace) -> int:
    import dataclasses
    import shutil

    from vla_sim.agents.policies.latent import AE_CONFIG, AE_WEIGHTS, load_action_ae
    from vla_sim.agents.training.bc import BCConfig, train_bc
    from vla_sim.agents.training.pretrain_action import latent_demos
    from vla_sim.data.demos import DemoArrays

    ae = load_action_ae(args.action_ae)
    cfg = config_from_args(BCConfig, args)
    cfg.policy = dataclasses.replace(cfg.policy, action_dim=ae.cfg.latent_dim)
    data = latent_demos(DemoArrays.fromopen_training_dataset(open_training_dataset(args.data, args.max_episodes)), ae)
    result = train_bc(data, args.out, cfg)
    for sub in ("last", "best"):
        if (Path(args.out) / sub).is_dir():
            for name in (AE_CONFIG, AE_WEIGHTS):
                shutil.copy2(Path(args.action_ae) / name, Path(args.out) / sub / name)
    print(f"latent BC: {result.steps} steps, final loss {result.train_losses[-1]:.4f}; load with "
          f"vla_sim.agents.policies.load_policy('{args.out}/best') or vla-sim eval")
    return 0
