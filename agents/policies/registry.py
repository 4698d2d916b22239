"""One entry point for every policy checkpoint: :func:`load_policy` reads ``policy_type`` from
``config.json`` and rebuilds the matching class. Evaluation and the CLI import only this."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_vla_weights, policy_type_of, read_checkpoint_config
from .config import VLAPolicyConfig
from .latent import load_latent_policy


def load_policy(directory: str | Path, device: str | torch.device = "cpu",
                config: VLAPolicyConfig | None = None) -> Any:
    """Rebuild whatever policy a checkpoint folder holds, in eval mode: a ``VLAPolicy``
    (``vla``), a per-task-head ``MultiHeadVLAPolicy`` (``vla_multihead``) or a
    ``LatentActionPolicy`` (``vla_latent``, a wrapper with ``act``). ``config`` demands a
    specific architecture of the network; weights that do not fit it raise
    ``CheckpointMismatchError`` naming the keys and shapes."""
    data = read_checkpoint_config(directory)
    if policy_type_of(data) == "vla_latent":
        return load_latent_policy(directory, device)
    return load_vla_weights(directory, device, config)
