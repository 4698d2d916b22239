"""Policy checkpoints: a folder with ``model.safetensors`` and ``config.json``, no pickled code.

``config.json``::

    {"policy_type": "vla", "policy": {...VLAPolicyConfig...},
     "normalization": {"state_mean": [...], "state_std": [...], "action_mean": [...], ...},
     "meta": {...free-form: training step, dataset, metrics...}}

The normalisation statistics also live in the weights as buffers (those are what the network
uses); the JSON copy is there for people and tools that read configs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vla_sim.config import ConfigError, config_from_dict, config_to_dict
from vla_sim.utils.io import atomic_write_json

from .config import VLAPolicyConfig
from .vla import VLAPolicy

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
POLICY_TYPE = "vla"


class CheckpointMismatchError(ValueError):
    """Checkpoint weights do not fit the architecture its config (or the caller) describes."""


def save_policy(policy: VLAPolicy, directory: str | Path, meta: dict[str, Any] | None = None
                ) -> Path:
    """Write ``policy`` to ``directory`` (created; files replaced atomically). Returns the path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".model.", suffix=".safetensors.tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"policy_type": POLICY_TYPE})
        os.replace(tmp, directory / WEIGHTS_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    atomic_write_json(directory / CONFIG_FILE, {
        "policy_type": POLICY_TYPE,
        "policy": config_to_dict(policy.config),
        "normalization": policy.normalization(),
        "meta": meta or {},
    })
    return directory


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no policy checkpoint at {directory} (missing {CONFIG_FILE})")
    data = json.loads(path.read_text())
    if data.get("policy_type") != POLICY_TYPE:
        raise CheckpointMismatchError(
            f"{path}: policy_type {data.get('policy_type')!r}, expected {POLICY_TYPE!r}")
    return data


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor],
                      source: str = "checkpoint") -> None:
    """``load_state_dict`` that reports missing, unexpected and wrongly shaped keys together."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} in {source} vs {tuple(own[k].shape)} in model"
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches {_short(shapes)}")
        raise CheckpointMismatchError(
            f"{source} does not fit the policy architecture: " + "; ".join(parts))
    module.load_state_dict(state)


def _short(items: list[str], n: int = 8) -> str:
    return str(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def load_policy(directory: str | Path, device: str | torch.device = "cpu",
                config: VLAPolicyConfig | None = None) -> VLAPolicy:
    """Rebuild a :class:`VLAPolicy` from a checkpoint folder, in eval mode.

    ``config`` (optional) demands a specific architecture; weights that do not fit it raise
    :class:`CheckpointMismatchError` naming the keys and shapes.
    """
    directory = Path(directory)
    data = read_checkpoint_config(directory)
    if config is None:
        try:
            config = config_from_dict(VLAPolicyConfig, data["policy"])
        except ConfigError as exc:
            raise CheckpointMismatchError(f"{directory / CONFIG_FILE}: {exc}") from None
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"no weights at {weights}")
    policy = VLAPolicy(config)
    load_state_strict(policy, load_file(str(weights)), source=str(weights))
    return policy.to(device).eval()


def copy_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Replace folder ``dst`` by a copy of ``src`` (copy beside it, then swap by renames)."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    old = dst.with_name(f".{dst.name}.old")
    for p in (tmp, old):
        if p.exists():
            shutil.rmtree(p)
    shutil.copytree(src, tmp)
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    if old.exists():
        shutil.rmtree(old)
