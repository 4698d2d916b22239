"""``vla-sim train ppo``, ``vla-sim train reinforce`` and ``vla-sim train rlpd``: RL fine-tuning
from a BC checkpoint.

    vla-sim train ppo --init BC_DIR --env vla_sim/PickPlace-v0 --reward language \\
        --steps 20000 --n-envs 4 --out runs/ppo [--config ppo.yaml] [key=value ...]
    vla-sim train reinforce --init BC_DIR --env vla_sim/Reach-v0 --reward dense --out runs/rf
    vla-sim train rlpd --init BC_DIR --demos DATA_DIR --env vla_sim/PickPlace-v0 \\
        --reward dense --steps 100000 --out runs/rlpd

Every PPOConfig / ReinforceConfig / RLPDConfig field is a flag (``--lr 1e-4``) and an override
(``lr=1e-4``); flags win over overrides, which win over ``--config``. The run's ``best/`` and ``last/`` load with ``vla-sim eval --policy RUN/best``.
"""

from __future__ import annotations

import argparse

from vla_sim.config import add_config_arguments, config_from_args


def _common(parser: argparse.ArgumentParser, cls: type) -> None:
    parser.add_argument("--init", default=None,
                        help="BC checkpoint folder to start from (model.safetensors + config.json)")
    parser.add_argument("--out", required=True, help="run folder: best/, last/, tb/")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out from checkpoints/last_state "
                             "(same config and --init)")
    # short names for the two fields every command line sets
    parser.add_argument("--env", dest="cfg__env_id", default=None, help="alias of --env-id")
    parser.add_argument("--steps", dest="cfg__total_env_steps", type=int, default=None,
                        help="alias of --total-env-steps")
    add_config_arguments(parser, cls)


def _load(cls, args: argparse.Namespace):
    return config_from_args(cls, args)


def add_ppo_parser(sub) -> None:
    parser = sub.add_parser("ppo", help="PPO fine-tuning from a BC checkpoint",
                            description="PPO (Stable-Baselines3) fine-tuning of a BC policy with "
                                        "a value warm-up and a decaying KL toward the BC policy.")
    from vla_sim.agents.training.configs import PPOConfig

    _common(parser, PPOConfig)
    parser.set_defaults(func=run_ppo)


def add_reinforce_parser(sub) -> None:
    parser = sub.add_parser("reinforce", help="REINFORCE fine-tuning from a BC checkpoint",
                            description="REINFORCE with a value baseline on whole episodes.")
    from vla_sim.agents.training.configs import ReinforceConfig

    _common(parser, ReinforceConfig)
    parser.set_defaults(func=run_reinforce)


def add_rlpd_parser(sub) -> None:
    parser = sub.add_parser("rlpd", help="off-policy fine-tuning with demonstrations (RLPD)",
                            description="SAC with a Q ensemble on the frozen BC features, half "
                                        "of every batch from the replayed demonstrations "
                                        "(--demos, the BC dataset) and a BC term.")
    from vla_sim.agents.training.configs import RLPDConfig

    _common(parser, RLPDConfig)
    parser.set_defaults(func=run_rlpd)


def _report(name: str, result) -> None:
    evals = ", ".join(f"{s}: {r:.2f}" for s, r in result.eval_history)
    print(f"{name}: {result.steps} env steps in {result.wall_s:.1f} s; success by env step "
          f"[{evals}]; best {result.best_success}; checkpoints in {result.out_dir}")


def run_ppo(args: argparse.Namespace) -> int:
    from vla_sim.agents.training.ppo import PPOConfig, train_ppo

    cfg = _load(PPOConfig, args)
    _report("ppo", train_ppo(cfg, args.out, init=args.init, resume=args.resume))
    return 0


def run_reinforce(args: argparse.Namespace) -> int:
    from vla_sim.agents.training.reinforce import ReinforceConfig, train_reinforce

    cfg = _load(ReinforceConfig, args)
    _report("reinforce", train_reinforce(cfg, args.out, init=args.init, resume=args.resume))
    return 0


def run_rlpd(args: argparse.Namespace) -> int:
    from vla_sim.agents.training.rlpd import RLPDConfig, train_rlpd

    cfg = _load(RLPDConfig, args)
    _report("rlpd", train_rlpd(cfg, args.out, init=args.init, resume=args.resume))
    return 0
