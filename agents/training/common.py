"""Pieces every trainer shares: device choice, checkpoint folders, logging."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from vla_sim.agents.policies.checkpoint import copy_checkpoint, save_policy
from vla_sim.agents.policies.vla import VLAPolicy

TRAINER_STATE_FILE = "trainer_state.pt"


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda if available else cpu; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def save_training_checkpoint(directory: Path, policy: VLAPolicy, trainer_state: dict[str, Any],
                             meta: dict[str, Any]) -> Path:
    """Write a resumable checkpoint folder: policy (safetensors + config.json) plus
    ``trainer_state.pt`` (optimizer, scheduler, step, ...: tensors and plain types only, so it
    loads with ``torch.load(weights_only=True)``). Written beside, then renamed into place."""
    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_policy(policy, tmp, meta=meta)
    torch.save(trainer_state, tmp / TRAINER_STATE_FILE)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


# Config keys that may change between an interrupted run and its resumption (logging, speed).
# Settings that may change between an interrupted run and its resume without changing the maths.
RESUME_FREE_KEYS = ("progress", "num_threads", "tensorboard", "backend", "ray_address")


def config_changes(before: dict[str, Any], now: dict[str, Any], free: tuple[str, ...],
                   prefix: str = "", defaults: dict[str, Any] | None = None) -> list[str]:
    """``"key: old -> new"`` for every setting of ``now`` that differs from ``before``, bar the
    keys in ``free``. A dotted free key (``"bc.log_every_grad_steps"``) makes its section
    compare field by field, so one nested setting may change while the rest may not. With
    ``defaults`` (the config class's defaults as a dict), a setting that ``before`` lacks (the
    run was started by a version without it) counts as unchanged while ``now`` has it at its
    default, which is the behaviour the older version had."""
    changed, defaults = [], defaults or {}
    for key, value in now.items():
        if key in free:
            continue
        nested = tuple(f[len(key) + 1:] for f in free if f.startswith(f"{key}."))
        old, sub = before.get(key), defaults.get(key)
        if key not in before and key in defaults and sub == value:
            continue
        if isinstance(value, dict) and isinstance(old, dict) and (nested or isinstance(sub, dict)):
            changed += config_changes(old, value, nested, f"{prefix}{key}.",
                                      sub if isinstance(sub, dict) else None)
        elif old != value:
            changed.append(f"{prefix}{key}: {old!r} -> {value!r}")
    return changed


def config_defaults(cfg: Any) -> dict[str, Any] | None:
    """``cfg``'s class defaults as a config dict (None when the class needs arguments)."""
    from vla_sim.config import config_to_dict

    try:
        return config_to_dict(type(cfg)())
    except (TypeError, ValueError):
        return None


def prepare_run(out: Path, config_file: str, config: dict[str, Any], resume: bool,
                trainer: str, state_dir: Path, resume_free: tuple[str, ...] = RESUME_FREE_KEYS,
                defaults: dict[str, Any] | None = None) -> None:
    """The one fresh-or-resume check of every trainer. A fresh run needs an empty ``out``
    (no ``last/``, no ``state_dir``) and writes ``config`` to ``config_file``; a resume needs
    both there and the same config, bar the keys in ``resume_free``."""
    import json

    from vla_sim.utils.io import atomic_write_json

    if resume:
        if not (out / config_file).is_file() or not state_dir.is_dir():
            raise FileNotFoundError(
                f"cannot resume: no previous {trainer} run in {out} (needs {config_file} and "
                f"{state_dir.relative_to(out)}/)")
        before = json.loads((out / config_file).read_text())
        changed = config_changes(before, config, resume_free, defaults=defaults)
        if changed:
            raise ValueError("cannot resume with a different config (the run would not continue "
                             "exactly): " + "; ".join(changed))
        return
    if (out / "last").exists() or state_dir.exists():
        raise ValueError(f"{out} already holds a run; pass resume=True (--resume) to continue "
                         "it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / config_file, config)


def load_trainer_state(directory: Path) -> dict[str, Any]:
    path = Path(directory) / TRAINER_STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: no {TRAINER_STATE_FILE} in {directory}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, empty or not a weights-only file
        raise ValueError(f"cannot resume: {path} is unreadable ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'empty'})") from None


def publish_checkpoint(src: Path, dst: Path) -> None:
    """Make ``dst`` (e.g. ``out/last``) a copy of checkpoint folder ``src``."""
    copy_checkpoint(src, dst)


class ScalarLogger:
    """TensorBoard scalars when enabled (and installed), otherwise nothing."""

    def __init__(self, log_dir: Path | None, purge_step: int | None = None):
        self.writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
