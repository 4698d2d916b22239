"""Action pre-training: an autoencoder of action chunks, and a policy that predicts its latent.

    chunk (H, A) of actions t..t+H-1 (past the episode end the last action repeats)
      -> normalise -> MLP encoder -> z (latent_dim) -> MLP decoder -> chunk

:func:`train_action_ae` fits it on demonstration actions and reports the reconstruction error
(MSE in env action units, train and held-out episodes). :class:`LatentActionPolicy` wraps a
:class:`VLAPolicy` whose Gaussian head has ``action_dim = latent_dim``: BC trains it on the
encoded chunks (it is plain ``train_bc`` on :func:`latent_demos`), and ``act`` decodes the
predicted latent into a chunk and executes its first ``execute_steps`` actions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vla_sim.agents.policies.config import ActionAEConfig
from vla_sim.agents.policies.latent import ActionChunkAE
from vla_sim.agents.policies.vla import ACTION_STD_FLOOR
from vla_sim.data.demos import DemoArrays, split_episodes

from . import distributed
from .loop import SupervisedLoop, adamw


def action_chunks(actions: np.ndarray, episode_index: np.ndarray, chunk: int) -> np.ndarray:
    """(N, A) actions -> (N, chunk, A): step t holds t..t+chunk-1 of its own episode, with the
    episode's last action repeated past its end."""
    actions = np.asarray(actions, np.float32)
    episode_index = np.asarray(episode_index)
    n = len(actions)
    # last step id of each step's episode (episodes are contiguous runs)
    change = np.flatnonzero(np.diff(episode_index) != 0)
    ends = np.append(change, n - 1)
    end_of = np.repeat(ends, np.diff(np.concatenate([[-1], ends])))
    ids = np.minimum(np.arange(n)[:, None] + np.arange(chunk)[None, :], end_of[:, None])
    return actions[ids]


@dataclass
class ActionAEResult:
    model: ActionChunkAE
    losses: list[float]
    train_mse: float
    val_mse: float | None
    baseline_mse: float
    """MSE of predicting the mean chunk (what a useless AE scores), on the same held-out set."""


@torch.no_grad()
def reconstruction_mse(model: ActionChunkAE, chunks: np.ndarray) -> float:
    """Mean squared error in env action units."""
    x = torch.from_numpy(np.asarray(chunks, np.float32))
    return float(((model(x) - x) ** 2).mean())


def train_action_ae(actions: np.ndarray, episode_index: np.ndarray,
                    config: ActionAEConfig | None = None) -> ActionAEResult:
    """Fit the autoencoder on demonstration actions; held-out whole episodes for ``val_mse``.

    Runs under ``torchrun`` too (gloo, on the CPU; :mod:`.distributed`): its loss is a plain
    mean, so each process takes its rows of the global batch. The model is a small MLP, so
    several processes rarely pay off; the option is there so a pipeline that launches every
    stage under ``torchrun`` works."""
    cfg = config or ActionAEConfig()
    with distributed.session("cpu") as dist:
        return _train_action_ae(actions, episode_index, cfg, dist)


def _train_action_ae(actions: np.ndarray, episode_index: np.ndarray, cfg: ActionAEConfig,
                     dist: distributed.Distributed) -> ActionAEResult:
    actions = np.asarray(actions, np.float32)
    if actions.ndim != 2 or actions.shape[1] != cfg.action_dim:
        raise ValueError(f"actions must be (N, {cfg.action_dim}), got {actions.shape}")
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    chunks = action_chunks(actions, episode_index, cfg.chunk)
    train_ids, val_ids = split_episodes(np.asarray(episode_index), cfg.val_fraction, cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = ActionChunkAE(cfg)
    model.action_mean.copy_(torch.from_numpy(actions[train_ids].mean(0)))
    model.action_std.copy_(torch.from_numpy(actions[train_ids].std(0)).clamp(min=ACTION_STD_FLOOR))
    optimizer = adamw(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps, cfg.lr * 0.05)
    data = torch.from_numpy(chunks)
    rows = dist.rows(cfg.batch_size) if dist.active else slice(None)
    dist.broadcast_module(model)

    def sample(rng: np.random.Generator) -> torch.Tensor:
        ids = train_ids[rng.integers(0, len(train_ids), cfg.batch_size)]
        return data[torch.from_numpy(ids[rows])]  # this process's rows of the global batch

    losses = SupervisedLoop(list(model.parameters()), optimizer, sample, model.normalized_loss,
                            cfg.seed, scheduler, dist=dist).run(0, cfg.steps)
    model.eval()
    held = val_ids if len(val_ids) else train_ids
    baseline = float(((chunks[held] - chunks[train_ids].mean(0)) ** 2).mean())
    return ActionAEResult(model, losses, reconstruction_mse(model, chunks[train_ids]),
                          reconstruction_mse(model, chunks[val_ids]) if len(val_ids) else None,
                          baseline)


def latent_demos(data: DemoArrays, model: ActionChunkAE) -> DemoArrays:
    """The same demonstrations with each step's action replaced by its chunk's latent, for
    ``train_bc`` with ``policy.action_dim = latent_dim``."""
    chunks = action_chunks(data.actions, data.episode_index, model.cfg.chunk)
    with torch.no_grad():
        z = model.encode(torch.from_numpy(chunks)).numpy().astype(np.float32)
    return DemoArrays(images=data.images, states=data.states, actions=z,
                      instructions=data.instructions, instruction_index=data.instruction_index,
                      episode_index=data.episode_index)


__all__ = ["ActionAEResult", "action_chunks", "latent_demos", "reconstruction_mse",
           "train_action_ae"]
