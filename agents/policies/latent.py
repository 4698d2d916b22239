"""A policy that predicts an action-chunk latent, decoded by a frozen autoencoder.

    chunk (H, A) of actions t..t+H-1 -> normalise -> MLP encoder -> z (latent_dim)
    -> MLP decoder -> chunk

:class:`LatentActionPolicy` wraps a :class:`VLAPolicy` whose Gaussian head has
``action_dim = latent_dim``; ``act`` decodes the predicted latent into a chunk and executes its
first ``execute_steps`` actions. Trained by ``vla_sim.agents.training.pretrain_action``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from vla_sim.config import config_from_dict, config_to_dict
from vla_sim.utils.io import atomic_write_json

from .config import ActionAEConfig
from .vla import VLAPolicy

AE_WEIGHTS = "action_ae.safetensors"
AE_CONFIG = "action_ae.json"


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ActionChunkAE(nn.Module):
    """(B, H, A) env-unit chunks <-> (B, latent_dim) latents; normalisation as buffers."""

    def __init__(self, cfg: ActionAEConfig):
        super().__init__()
        self.cfg = cfg
        n = cfg.chunk * cfg.action_dim
        self.encoder = _mlp([n, *cfg.hidden, cfg.latent_dim])
        self.decoder = _mlp([cfg.latent_dim, *reversed(cfg.hidden), n])
        self.register_buffer("action_mean", torch.zeros(cfg.action_dim))
        self.register_buffer("action_std", torch.ones(cfg.action_dim))

    def encode(self, chunks: torch.Tensor) -> torch.Tensor:
        x = (chunks - self.action_mean) / self.action_std
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.decoder(z).view(-1, self.cfg.chunk, self.cfg.action_dim)
        return x * self.action_std + self.action_mean

    def forward(self, chunks: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(chunks))

    def normalized_loss(self, chunks: torch.Tensor) -> torch.Tensor:
        """MSE in normalised units (what training minimises)."""
        target = (chunks - self.action_mean) / self.action_std
        recon = self.decoder(self.encode(chunks)).view_as(target)
        return nn.functional.mse_loss(recon, target)


def save_action_ae(model: ActionChunkAE, directory: str | Path, meta: dict | None = None) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(directory / AE_WEIGHTS))
    atomic_write_json(directory / AE_CONFIG, {"config": config_to_dict(model.cfg), "meta": meta or {}})
    return directory


def load_action_ae(directory: str | Path) -> ActionChunkAE:
    from .checkpoint import load_state_strict, read_weights

    directory = Path(directory)
    if not (directory / AE_CONFIG).is_file():
        raise FileNotFoundError(f"no action autoencoder at {directory} (missing {AE_CONFIG})")
    cfg = config_from_dict(ActionAEConfig, json.loads((directory / AE_CONFIG).read_text())["config"])
    model = ActionChunkAE(cfg)
    load_state_strict(model, read_weights(directory / AE_WEIGHTS), str(directory))
    return model.eval()


class LatentActionPolicy:
    policy_type = "vla_latent"

    """A VLA policy that predicts an action-chunk latent, decoded by a frozen autoencoder.

    ``act`` (raw env obs, single) returns the next action of the decoded chunk, re-planning
    every ``execute_steps`` steps; ``reset()`` (called by the evaluator per episode) clears the
    queue. Batched obs always re-plan and return the first action of each chunk.
    """

    def __init__(self, policy: VLAPolicy, decoder: ActionChunkAE, execute_steps: int = 1):
        if policy.config.action_dim != decoder.cfg.latent_dim:
            raise ValueError(f"policy.action_dim {policy.config.action_dim} must equal the "
                             f"autoencoder's latent_dim {decoder.cfg.latent_dim}")
        if not 1 <= execute_steps <= decoder.cfg.chunk:
            raise ValueError(f"execute_steps must be in 1..{decoder.cfg.chunk}, got {execute_steps}")
        self.policy, self.decoder, self.execute_steps = policy, decoder.eval(), int(execute_steps)
        self._queue: list[np.ndarray] = []

    def reset(self, seed: int | None = None) -> None:
        self._queue = []

    @torch.no_grad()
    def chunk(self, obs: Mapping[str, Any]) -> np.ndarray:
        """Decoded chunk(s) (B, H, A) in [-1, 1]."""
        self.policy.eval()
        batch, _ = self.policy.prepare_obs(obs)
        z = self.policy.distribution(batch).mode()
        return self.decoder.decode(z.cpu()).clamp(-1.0, 1.0).numpy().astype(np.float32)

    def act(self, obs: Mapping[str, Any], deterministic: bool = True) -> np.ndarray:
        single = np.asarray(obs[self.policy.config.image_keys[0]]).ndim == 3
        if not single:
            return self.chunk(obs)[:, 0]
        if not self._queue:
            self._queue = list(self.chunk(obs)[0][: self.execute_steps])
        return self._queue.pop(0)


def save_latent_policy(policy: LatentActionPolicy, directory: str | Path) -> Path:
    """Inner policy as a normal checkpoint in ``directory``, autoencoder beside it."""
    from .checkpoint import save_policy

    directory = Path(directory)
    save_policy(policy.policy, directory, meta={"latent_action": {
        "execute_steps": policy.execute_steps}}, policy_type=LatentActionPolicy.policy_type)
    save_action_ae(policy.decoder, directory)
    return directory


def load_latent_policy(directory: str | Path, device: str = "cpu") -> LatentActionPolicy:
    from .checkpoint import load_vla_weights, read_checkpoint_config

    meta = read_checkpoint_config(directory).get("meta", {}).get("latent_action", {})
    return LatentActionPolicy(load_vla_weights(directory, device), load_action_ae(directory),
                              int(meta.get("execute_steps", 1)))
