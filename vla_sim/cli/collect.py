"""``vla-sim collect``: record scripted-expert demonstrations into a LeRobot v3.0 dataset.

Flags are generated from :class:`vla_sim.data.collect.CollectConfig` (one definition of every
default); ``--config collect.yaml`` and ``key=value`` overrides work as for every command.
"""

from __future__ import annotations

import argparse

from vla_sim.config import add_config_arguments, config_from_args


def add_parser(subparsers) -> None:
    from vla_sim.data.collect import CollectConfig

    p = subparsers.add_parser(
        "collect", help="collect expert demonstrations (LeRobotDataset v3.0), resumable",
        description="Roll out the scripted expert and keep successful episodes. Re-running the same "
                    "command resumes an interrupted collection; a larger --episodes extends it.")
    add_config_arguments(p, CollectConfig, required=("out",))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vla_sim.data.collect import CollectConfig, collect

    cfg = config_from_args(CollectConfig, args)
    r = collect(cfg)
    rate = r.attempts_this_run / r.seconds if r.seconds > 0 else 0.0
    print(f"{r.out}: {r.episodes} episodes ({r.successes} successful) after {r.attempts} attempts; "
          f"expert success {r.success_rate:.1%}; this run {r.attempts_this_run} attempts in "
          f"{r.seconds:.1f} s ({rate:.2f} attempts/s)")
    if not r.reached_target:
        print(f"warning: stopped at the attempt cap ({cfg.attempt_cap}) with {r.successes} of "
              f"{cfg.episodes} successes; raise --max-attempts to continue")
        return 1
    return 0
