"""Policy checkpoints: a folder with ``model.safetensors`` and ``config.json``, no pickled code.

``config.json``::

    {"policy_type": "vla", "policy": {...VLAPolicyConfig...}, "policy_kwargs": {...},
     "normalization": {"state_mean": [...], "state_std": [...], "action_mean": [...], ...},
     "meta": {...free-form: training step, dataset, metrics...}}

``policy_type`` keys the registry (:data:`POLICY_TYPES`): ``vla`` (:class:`VLAPolicy`),
``vla_multihead`` (per-task heads; ``policy_kwargs`` holds the tasks), ``vla_latent`` (a VLA
policy predicting action-chunk latents, its autoencoder saved beside it).
:func:`vla_sim.agents.policies.registry.load_policy` rebuilds any of them; nothing else needs to
know which class a folder holds.

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

from .config import VLAPolicyConfig, upgrade_policy_dict
from .vla import VLAPolicy

from .checkpoint_meta import (  # noqa: F401  (re-exported: the torch-free half of this module)
    CONFIG_FILE,
    POLICY_TYPE,
    POLICY_TYPES,
    WEIGHTS_FILE,
    CheckpointMismatchError,
    policy_type_of,
    read_checkpoint_config,
)


def save_policy(policy: VLAPolicy, directory: str | Path, meta: dict[str, Any] | None = None,
                policy_type: str | None = None) -> Path:
    """Write ``policy`` to ``directory`` (created; files replaced atomically). Returns the path.
    ``policy_type`` defaults to the class's own (``VLAPolicy.policy_type``)."""
    policy_type = policy_type or getattr(policy, "policy_type", POLICY_TYPE)
    if policy_type not in POLICY_TYPES:
        raise ValueError(f"unknown policy_type {policy_type!r}; registered: {POLICY_TYPES}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".model.", suffix=".safetensors.tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"policy_type": policy_type})
        os.replace(tmp, directory / WEIGHTS_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    init_kwargs = getattr(policy, "init_kwargs", None)
    atomic_write_json(directory / CONFIG_FILE, {
        "policy_type": policy_type,
        "policy": config_to_dict(policy.config),
        "policy_kwargs": init_kwargs() if callable(init_kwargs) else {},
        "normalization": policy.normalization(),
        "meta": meta or {},
    })
    return directory


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a truncated or corrupt file is a
    :class:`CheckpointMismatchError` naming it (never a traceback from the parser)."""
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointMismatchError(f"{path}: unreadable weights ({exc})") from None
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise CheckpointMismatchError(f"{path}: non-finite (NaN or inf) weights in {_short(bad)}; "
                                      "the run that wrote them diverged")
    return tensors


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


def load_vla_weights(directory: str | Path, device: str | torch.device = "cpu",
                     config: VLAPolicyConfig | None = None) -> VLAPolicy:
    """The network in a checkpoint folder (:class:`VLAPolicy` or a subclass), in eval mode.

    ``config`` (optional) demands a specific architecture; weights that do not fit it raise
    :class:`CheckpointMismatchError` naming the keys and shapes.
    """
    from .multihead import MultiHeadVLAPolicy

    directory = Path(directory)
    data = read_checkpoint_config(directory)
    if config is None:
        try:
            config = config_from_dict(VLAPolicyConfig, upgrade_policy_dict(data["policy"]))
        except ConfigError as exc:
            raise CheckpointMismatchError(f"{directory / CONFIG_FILE}: {exc}") from None
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"no weights at {weights}")
    if policy_type_of(data) == "vla_multihead":
        tasks = (data.get("policy_kwargs") or {}).get("tasks") or data["meta"]["multitask"]["tasks"]
        policy: VLAPolicy = MultiHeadVLAPolicy(config, tasks)
    else:
        policy = VLAPolicy(config)
    load_state_strict(policy, read_weights(weights), source=str(weights))
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
