"""``vla-sim quickstart``: demonstrations -> BC -> PPO -> evaluation report with videos."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart", help="collect demos, train BC + PPO, evaluate, write a report and videos",
        description="Run the whole pipeline into one run folder. Finished stages are skipped on "
                    "a re-run, so an interrupted quickstart continues where it stopped.")
    p.add_argument("--config", default=None,
                   help="YAML settings (default: the packaged vla_sim/configs/quickstart.yaml)")
    p.add_argument("--preset", default="default", help="default | tiny (a 2-3 minute smoke test)")
    p.add_argument("--out", default=None, help="run folder (default: runs/quickstart[-tiny])")
    p.add_argument("overrides", nargs="*", help="config overrides key=value, e.g. bc.steps=500")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vla_sim.config import load_config
    from vla_sim.pipeline import (
        PRESETS,
        QuickstartConfig,
        default_config_path,
        run_quickstart,
    )

    if args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r}; valid presets: {sorted(PRESETS)}")
    cfg = load_config(QuickstartConfig, args.config or default_config_path(),
                      PRESETS[args.preset] + list(args.overrides))
    out = Path(args.out or ("runs/quickstart" if args.preset == "default"
                            else f"runs/quickstart-{args.preset}"))
    run_quickstart(cfg, out)
    return 0
