"""The ``vla-sim`` command: wiring only. Each subcommand lives in its own module with
``add_parser(subparsers)`` that registers it and sets ``func`` to the function to run."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys

from vla_sim.utils.lock import FolderLock

# module name in vla_sim.cli -> imported lazily so ``vla-sim --help`` stays fast.
COMMAND_MODULES = [
    "demo", "bench", "randomize", "collect", "dataset", "train", "pretrain", "eval",
    "quickstart", "doctor",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-sim", description="Train and evaluate VLA robot policies in PyBullet.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"vla_sim.cli.{name}").add_parser(sub)
    return parser


def configure_logging(level: int = logging.INFO) -> None:
    """Library messages (``logging`` under ``vla_sim``) go to stdout as plain lines. Rebound on
    every call, so the handler writes to the current ``sys.stdout``."""
    logger = logging.getLogger("vla_sim")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        out = getattr(args, "out", None) or getattr(args, "cfg__out", None)
        # Under torchrun every process runs the command and rank 0 alone writes: it holds the lock.
        writer = out and os.environ.get("RANK", "0") == "0"
        with FolderLock(out) if writer else contextlib.nullcontext():  # one writer per folder
            rc = args.func(args)
    except KeyboardInterrupt:
        print("interrupted (what was kept, if anything, is said above)", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # bad input, missing or unwritable files: one line
        message = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and \
            exc.strerror and exc.filename else str(exc)
        print(f"vla-sim {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
