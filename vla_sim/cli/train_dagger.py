"""``vla-sim train dagger``: DAgger rounds with the scripted expert on top of BC.

    vla-sim train dagger --data DEMOS --out RUN [--env ENV] [--config dagger.yaml]
        [key=value ...] [--resume] [--workers N] [--eval-env ENV] [--eval-episodes N]

Overrides are dotted DAggerConfig keys, e.g. ``rounds=5 episodes_per_round=20 beta0=0.5
bc.steps=3000 bc.policy.cameras=[front,wrist]``. DEMOS is left untouched; the aggregated
dataset is RUN/data, the newest policy RUN/last.
"""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

from vla_sim.cli.common import add_eval_check_arguments
from vla_sim.config import add_config_arguments, config_from_args


def add_dagger_parser(sub) -> None:
    """Add ``dagger`` to the ``vla-sim train`` subparsers."""
    from vla_sim.agents.training.configs import DAggerConfig

    p = sub.add_parser("dagger", help="DAgger: learner rollouts relabelled by the scripted expert",
                       description="DAgger (Ross et al. 2011): rounds of learner rollouts with a "
                                   "beta-mixture of learner and expert control, the expert's "
                                   "action as the label at every visited state, appended to "
                                   "the dataset, then more BC.")
    p.add_argument("--data", required=True, help="demonstrations (vla-sim collect output); "
                                                 "copied, never written")
    p.add_argument("--out", required=True, help="run folder: data/, policy_K/, last/, "
                                                "dagger_state.json")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (rounds may be raised)")
    add_eval_check_arguments(p)
    add_config_arguments(p, DAggerConfig)
    p.set_defaults(func=run_dagger)


def run_dagger(args: argparse.Namespace) -> int:
    from vla_sim.agents.training.dagger import DAggerConfig, train_dagger
    from vla_sim.cli.common import dataset_eval_fn
    from vla_sim.data.reader import DatasetReader

    cfg = config_from_args(DAggerConfig, args)  # bad keys fail before any work
    # dataset_eval_fn reads only the dataset's recorded collection settings: no video decoding.
    dataset = SimpleNamespace(reader=DatasetReader(args.data))
    eval_fn = dataset_eval_fn(dataset, args.eval_env or (cfg.env or None), args.eval_episodes,
                              cfg.bc.policy)
    result = train_dagger(args.data, args.out, cfg, resume=args.resume, eval_fn=eval_fn)
    print(f"dagger: {result.rounds_completed} rounds; newest policy {result.policy_dir}")
    print(f"{'round':>5} {'beta':>6} {'episodes':>8} {'success':>8} {'learner%':>8} "
          f"{'frames+':>8} {'val loss':>9} {'seconds':>8}")
    for r in result.history:
        val = "n/a" if r["val_loss"] is None else f"{r['val_loss']:.4f}"
        print(f"{r['round'] + 1:>5} {r['beta']:>6.3f} {r['episodes']:>8} "
              f"{r['rollout_success']:>8.2f} {100 * r['learner_step_fraction']:>8.0f} "
              f"{r['frames_added']:>8} {val:>9} {r['seconds']:>8.1f}")
    if result.initial is not None:
        print(f"initial BC: {json.dumps(result.initial)}")
    return 0
