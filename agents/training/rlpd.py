"""RLPD-style off-policy fine-tuning of a BC policy with its demonstrations (Ball et al. 2023,
"Efficient Online RL with Offline Data"; the BC anchor as in TD3+BC and IBRL).

The BC policy is split once: its extractor up to the last ``actor_layers`` trunk layers is the
frozen *encoder* (images, instruction, proprioception -> a feature vector, no autograd), and
those trunk layers plus the Gaussian head are the *actor*, shared with the :class:`VLAPolicy`
that is saved, so every checkpoint is a ``save_policy`` folder ``vla-sim eval`` reads. Every
observation is encoded once, when it is seen, and the buffers hold float32 feature vectors:
an update never touches an image.

One env step, top to bottom:
  1. act: a = clip(x, -1, 1), x ~ N(mu(f), sigma) from the actor on the features f (sampling);
  2. store (f, privileged, a, r, f', privileged', terminated) in the online buffer;
  3. ``utd_ratio`` critic updates, each on a batch that is ``demo_fraction`` demonstrations and
     the rest online transitions (RLPD's symmetric sampling):
         y = r + gamma * (1 - terminated) * (min_{i in S} Qbar_i(s', a') - alpha log pi(a'|s')),
     a' ~ pi(.|f'), S a random pair of the ``ensemble_size`` target networks (REDQ); every
     LayerNorm Q_i regresses y; the targets follow by Polyak averaging (``tau``);
  4. one actor update (after ``critic_warmup_env_steps``):
         L = mean(alpha log pi(a|s) - mean_i Q_i(s, a)) / max(1, mean|Q|)
             + bc * |mu(s_demo) - a_demo|^2
     (TD3+BC's normalisation of the Q term, floored at 1 so a sparse reward's near-zero Q is
     not blown up; the BC term in normalised action units, on the demonstration rows only),
     and one step of the temperature toward ``target_entropy``.
The critics read ``[f, obs["privileged"]]`` when ``asymmetric_critic`` (the actor never does).

Demonstrations: each episode of ``demos`` (the BC dataset) is *replayed* in this run's training
env from its recorded seed, randomization sample and executed actions (DART noise recomputed,
DAgger's recorded). Replay is exact in this simulator (tests/data/test_data_real_env.py), and it
is the only way to get what a transition needs under any reward mode: the dense and language
rewards and the privileged state are functions of simulator state the dataset does not hold,
and the episode's last next-observation is not recorded at all. An episode whose replayed
proprioception leaves the recorded one (atol 1e-4) or whose outcome differs is dropped, with a
warning. Actions: the buffer holds the executed action (what Q judges), the BC term reads the
recorded label (the expert's action, what BC trained on).

Actions are clipped, not tanh-squashed: the saved VLAPolicy acts with clip(mu) and the gripper's
+-1 stays reachable. The entropy term is the unclipped Gaussian's; Q reads the clipped action.

Resume: ``checkpoints/last_state`` holds the policy (safetensors), critics, targets and
temperature (``critics.safetensors``), optimizers, counters and RNG states
(``trainer_state.pt``, weights-only) and both replay buffers (``replay.npz``, no pickle), so a
resumed run continues with everything it had learned and stored; episodes in flight restart
from fresh resets (a new env seed), as in PPO.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vla_sim.agents.policies import VLAPolicy, VLAPolicyConfig, save_policy
from vla_sim.agents.policies.vla import GaussianHead
from vla_sim.config import config_to_dict
from vla_sim.language.encoder import get_text_encoder
from vla_sim.utils.seeding import TRAIN_BASE_SEED

from .common import (
    ScalarLogger,
    config_defaults,
    load_trainer_state,
    prepare_run,
    save_training_checkpoint,
)
from .configs import RLPDConfig
from .loop import fused
from .rl_common import (
    RLResult,
    RunStats,
    SuccessChecks,
    bc_schedule,
    env_factory,
    load_warm_start,
    make_training_env,
)

log = logging.getLogger(__name__)

PRIVILEGED = "privileged"
CRITICS_FILE = "critics.safetensors"
REPLAY_FILE = "replay.npz"
LOG_EVERY_ENV_STEPS = 256
STATE_ATOL = 1e-4
"""How far (state units: m, rad, rad/s) a replayed demonstration's proprioception may be from
the recorded one before the episode counts as not reproduced."""


# ------------------------------------------------------------------------ encoder and actor
class Actor(nn.Module):
    """The trainable end of the VLA policy: its last trunk layers (``tail``) and Gaussian head,
    the same module objects the policy holds (saving the policy saves the actor)."""

    def __init__(self, tail: nn.Sequential, head: GaussianHead):
        super().__init__()
        self.tail, self.head = tail, head

    def distribution(self, features: torch.Tensor):
        """Gaussian over env-unit actions (before clipping) at the stored ``features``."""
        return self.head.distribution(self.tail(features))

    def bc_error(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B,) squared error of the mean action to ``labels``, summed over action dims, in
        normalised units (BC's loss scale)."""
        head = self.head
        target = (labels - head.action_mean) / head.action_std
        return ((head.normalized_mean(self.tail(features)) - target) ** 2).sum(-1)


def split_policy(policy: VLAPolicy, actor_layers: int) -> tuple[nn.Module, Actor, int]:
    """(frozen encoder: a copy of the extractor whose trunk stops ``actor_layers`` Linear
    layers before its end; the actor; the encoder's feature size)."""
    trunk = policy.extractor.trunk
    linears = [i for i, m in enumerate(trunk) if isinstance(m, nn.Linear)]
    if actor_layers > len(linears):
        raise ValueError(f"actor_layers must be <= the trunk's {len(linears)} layers, got "
                         f"{actor_layers}")
    cut = linears[len(linears) - actor_layers] if actor_layers else len(trunk)
    encoder = copy.deepcopy(policy.extractor)
    encoder.trunk = encoder.trunk[:cut]
    encoder.eval().requires_grad_(False)
    dim = trunk[cut].in_features if actor_layers else policy.extractor.features_dim
    return encoder, Actor(trunk[cut:], policy.action_head), dim


@torch.no_grad()
def encode(encoder: nn.Module, obs: dict[str, Any], device: torch.device,
           chunk: int = 256) -> np.ndarray:
    """(N, F) float32 features of a batch of embedding-wrapped observations (numpy arrays)."""
    keys = [k for k in obs if k != PRIVILEGED]
    n = len(obs["state"])
    out = []
    for i in range(0, n, chunk):
        batch = {k: torch.as_tensor(np.asarray(obs[k][i:i + chunk])).to(device) for k in keys}
        out.append(encoder(batch).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


# -------------------------------------------------------------------------------- critics
class EnsembleLinear(nn.Module):
    """``members`` independent linear layers applied at once: (E, B, n_in) -> (E, B, n_out),
    or only the members at indices ``members``; each initialised like ``nn.Linear``."""

    def __init__(self, members: int, n_in: int, n_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(members, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        if members is None:
            return torch.baddbmm(self.bias, x, self.weight)
        return torch.baddbmm(self.bias[members], x, self.weight[members])


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dim with each member's own scale and shift."""

    def __init__(self, members: int, width: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(members, 1, width))
        self.bias = nn.Parameter(torch.zeros(members, 1, width))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        weight, bias = ((self.weight, self.bias) if members is None
                        else (self.weight[members], self.bias[members]))
        return F.layer_norm(x, x.shape[-1:]) * weight + bias


class QEnsemble(nn.Module):
    """E LayerNorm MLP Q-networks (Linear-LayerNorm-ReLU twice, then Linear; RLPD's critic):
    (observation vector (B, n_obs), action (B, A)) -> Q (E, B), or (len(members), B) for the
    members at indices ``members`` only (the TD target needs just its random subset)."""

    def __init__(self, n_obs: int, action_dim: int, hidden: int, members: int):
        super().__init__()
        self.members = members
        self.linears = nn.ModuleList([EnsembleLinear(members, n_obs + action_dim, hidden),
                                      EnsembleLinear(members, hidden, hidden),
                                      EnsembleLinear(members, hidden, 1)])
        self.norms = nn.ModuleList([EnsembleLayerNorm(members, hidden),
                                    EnsembleLayerNorm(members, hidden)])

    def forward(self, obs: torch.Tensor, action: torch.Tensor,
                members: torch.Tensor | None = None) -> torch.Tensor:
        n = self.members if members is None else len(members)
        x = torch.cat([obs, action], dim=-1).unsqueeze(0).expand(n, -1, -1)
        for linear, norm in zip(self.linears, self.norms):
            x = torch.relu(norm(linear(x, members), members))
        return self.linears[-1](x, members).squeeze(-1)


# -------------------------------------------------------------------------------- replay
class TransitionBuffer:
    """Ring buffer of feature transitions: one float32 array (capacity, dim) per field."""

    def __init__(self, capacity: int, dims: dict[str, int]):
        self.capacity, self.dims = int(capacity), dict(dims)
        self.data = {k: np.zeros((self.capacity, d), np.float32) for k, d in self.dims.items()}
        self.size = self.pos = 0

    def __len__(self) -> int:
        return self.size

    def add(self, rows: dict[str, np.ndarray]) -> None:
        """Append N rows (each field (N, dim) or (N,)), overwriting the oldest when full."""
        n = len(rows["reward"])
        at = (self.pos + np.arange(n)) % self.capacity
        for key, array in self.data.items():
            array[at] = np.asarray(rows[key], np.float32).reshape(n, -1)
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def rows(self, index: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[index] for k, v in self.data.items()}

    def nbytes(self) -> int:
        return sum(v[:self.size].nbytes for v in self.data.values())

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        """The stored rows and the write position, as named arrays for ``np.savez``."""
        out = {f"{prefix}__{k}": v[:self.size] for k, v in self.data.items()}
        out[f"{prefix}__pos"] = np.array([self.pos, self.size], np.int64)
        return out

    def load_state(self, arrays: Any, prefix: str) -> None:
        self.pos, self.size = (int(x) for x in arrays[f"{prefix}__pos"])
        for key, array in self.data.items():
            array[:self.size] = arrays[f"{prefix}__{key}"]


def buffer_dims(feature_dim: int, privileged_dim: int, action_dim: int) -> dict[str, int]:
    dims = {"features": feature_dim, "next_features": feature_dim, "action": action_dim,
            "label": action_dim, "reward": 1, "terminated": 1}
    if privileged_dim:
        dims.update(privileged=privileged_dim, next_privileged=privileged_dim)
    return dims


def sample_batch(demo: TransitionBuffer | None, online: TransitionBuffer, batch_size: int,
                 demo_fraction: float, generator: torch.Generator,
                 device: torch.device) -> dict[str, torch.Tensor]:
    """``round(batch_size * demo_fraction)`` demonstration rows, then online rows (uniform,
    with replacement), as tensors; ``demo`` (B,) bool marks the demonstration rows."""
    n_demo = round(batch_size * demo_fraction) if demo is not None and len(demo) else 0
    parts, sources = [], []
    for buffer, n in ((demo, n_demo), (online, batch_size - n_demo)):
        if n:
            parts.append(buffer.rows(torch.randint(len(buffer), (n,), generator=generator).numpy()))
            sources.append(np.full(n, buffer is demo))
    batch = {k: torch.as_tensor(np.concatenate([p[k] for p in parts])).to(device)
             for k in parts[0]}
    batch["demo"] = torch.as_tensor(np.concatenate(sources)).to(device)
    return batch


# ---------------------------------------------------------------------------- demonstrations
def replay_demonstrations(root: str | Path, env, encoder: nn.Module, device: torch.device,
                          max_episodes: int = 0) -> tuple[TransitionBuffer, dict[str, Any]]:
    """Replay the dataset's episodes in ``env`` (the training env stack) and return them as a
    buffer of feature transitions, plus counts (``episodes``, ``transitions``, ``dropped``
    with reasons, ``seconds``). See the module docstring for why replay."""
    from vla_sim.data import format as fmt
    from vla_sim.data import open_dataset
    from vla_sim.data.collect import executed_actions

    t0 = time.perf_counter()
    reader = open_dataset(root)
    arrays = reader.low_dim_arrays()
    n_episodes = reader.num_episodes if not max_episodes else min(max_episodes,
                                                                  reader.num_episodes)
    episodes: list[dict[str, np.ndarray]] = []
    dropped: dict[int, str] = {}
    for i in range(n_episodes):
        rec, ep = reader.episode_record(i), reader.episodes[i]
        lo, hi = int(ep["dataset_from_index"]), int(ep["dataset_to_index"])
        if rec["seed"] is None or rec["randomization"] is None:
            dropped[i] = "no replay record (seed, randomization sample)"
            continue
        labels = arrays[fmt.ACTION_KEY][lo:hi].astype(np.float32)
        meta = rec["metadata"]
        executed = (np.asarray(meta["executed_actions"], np.float32) if "executed_actions" in meta
                    else executed_actions(labels, rec["seed"], float(meta.get("noise", 0.0))))
        try:
            steps, why = _replay_episode(env, rec, executed, labels,
                                         arrays[fmt.STATE_KEY][lo:hi])
        except ValueError as exc:  # e.g. the sample's objects are not this env's episode's
            steps, why = None, str(exc)
        if steps is None:
            dropped[i] = why
            continue
        obs = {k: np.stack([o[k] for o in steps["obs"]]) for k in steps["obs"][0]}
        nxt = {k: np.stack([o[k] for o in steps["next_obs"]]) for k in steps["next_obs"][0]}
        rows = {"features": encode(encoder, obs, device),
                "next_features": encode(encoder, nxt, device), "action": steps["action"],
                "label": steps["label"], "reward": steps["reward"],
                "terminated": steps["terminated"]}
        if PRIVILEGED in obs:
            rows.update(privileged=obs[PRIVILEGED], next_privileged=nxt[PRIVILEGED])
        episodes.append(rows)
    for i, why in dropped.items():
        log.warning("%s: demonstration episode %d not used: %s", root, i, why)
    if not episodes:
        raise ValueError(f"demos: none of the {n_episodes} episodes of {root} replays in this "
                         f"env ({next(iter(dropped.values()), 'no episodes')})")
    rows = {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0]}
    dims = {k: v.reshape(len(v), -1).shape[1] for k, v in rows.items()}
    buffer = TransitionBuffer(len(rows["reward"]), dims)
    buffer.add(rows)
    info = {"episodes": len(episodes), "transitions": len(buffer), "dropped": len(dropped),
            "seconds": round(time.perf_counter() - t0, 3)}
    log.info("replayed %d demonstration episodes (%d transitions) from %s in %.1f s; %d dropped",
             info["episodes"], info["transitions"], root, info["seconds"], info["dropped"])
    return buffer, info


def _replay_episode(env, rec: dict[str, Any], executed: np.ndarray, labels: np.ndarray,
                    states: np.ndarray) -> tuple[dict[str, Any] | None, str]:
    """One recorded episode stepped through ``env``: (its steps, "") or (None, why not)."""
    # the recorded task too: an episode may have been collected with the reset option "task"
    obs, _ = env.reset(seed=int(rec["seed"]), options={"randomization": rec["randomization"],
                                                       "task": rec.get("task") or None})
    steps: dict[str, list] = {"obs": [], "next_obs": [], "action": [], "label": [], "reward": [],
                              "terminated": []}
    info: dict[str, Any] = {}
    for t, action in enumerate(executed):
        if not np.allclose(obs["state"], states[t], atol=STATE_ATOL):
            return None, f"replay left the recorded states at step {t}"
        next_obs, reward, terminated, truncated, info = env.step(action)
        for key, value in (("obs", obs), ("next_obs", next_obs), ("action", action),
                           ("label", labels[t]), ("reward", reward),
                           ("terminated", float(terminated))):
            steps[key].append(value)
        obs = next_obs
        if terminated or truncated:
            break
    if len(steps["action"]) == len(executed) and rec["success"] is not None \
            and bool(info.get("is_success", False)) != bool(rec["success"]):
        return None, "replay outcome differs from the recorded success"
    return {k: (v if k in ("obs", "next_obs") else np.asarray(v, np.float32))
            for k, v in steps.items()}, ""


# -------------------------------------------------------------------------------- learner
class RLPDLearner:
    """The Q ensemble, its targets, the temperature and the three optimizers around an
    :class:`Actor`; :meth:`update_critic` and :meth:`update_actor` are one gradient step each."""

    def __init__(self, cfg: RLPDConfig, actor: Actor, n_obs: int, action_dim: int,
                 device: torch.device):
        self.cfg, self.actor = cfg, actor
        self.critic = QEnsemble(n_obs, action_dim, cfg.value_hidden, cfg.ensemble_size).to(device)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.init_temperature), device=device,
                                      requires_grad=True)
        self.target_entropy = (-float(action_dim) if cfg.target_entropy is None
                               else float(cfg.target_entropy))
        self.actor_opt = torch.optim.Adam(actor.parameters(), lr=cfg.lr, **fused(actor.parameters()))
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.value_lr,
                                           **fused(self.critic.parameters()))
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.temperature_lr,
                                          **fused([self.log_alpha]))
        self.generator = torch.Generator().manual_seed(cfg.seed)
        """Batch indices and target subsets (its state is part of the checkpoint)."""

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    @staticmethod
    def critic_input(batch: dict[str, torch.Tensor], prefix: str = "") -> torch.Tensor:
        """What the critics read: the features, then the privileged state when stored."""
        parts = [batch[f"{prefix}features"]]
        if f"{prefix}privileged" in batch:
            parts.append(batch[f"{prefix}privileged"])
        return torch.cat(parts, dim=-1)

    def draw_subset(self) -> torch.Tensor:
        """``critic_subset`` distinct ensemble members, at random (one draw per update)."""
        return torch.randperm(self.cfg.ensemble_size, generator=self.generator)[
            :self.cfg.critic_subset]

    @torch.no_grad()
    def td_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) r + gamma (1 - terminated) (min over a random subset of the target Q-values at
        (s', a'), a' ~ pi(.|s'), minus alpha log pi(a'|s') when ``backup_entropy``)."""
        dist = self.actor.distribution(batch["next_features"])
        raw = dist.sample()
        subset = self.draw_subset().to(raw.device)
        next_q = self.target(self.critic_input(batch, "next_"), raw.clamp(-1.0, 1.0),
                             subset).min(dim=0).values
        if self.cfg.backup_entropy:
            next_q = next_q - self.alpha * dist.log_prob(raw)
        return (batch["reward"].squeeze(-1)
                + self.cfg.gamma * (1.0 - batch["terminated"].squeeze(-1)) * next_q)

    def update_critic(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One step of every member toward the TD target, then the Polyak step."""
        target = self.td_target(batch)
        q = self.critic(self.critic_input(batch), batch["action"])  # (E, B)
        loss = ((q - target) ** 2).mean(dim=1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        with torch.no_grad():
            for p, tp in zip(self.critic.parameters(), self.target.parameters()):
                tp.lerp_(p, self.cfg.tau)
        return {"q_loss": loss.item() / self.cfg.ensemble_size, "q_mean": q.mean().item(),
                "td_target": target.mean().item()}

    def update_actor(self, batch: dict[str, torch.Tensor], bc_weight: float) -> dict[str, float]:
        """One actor step (SAC term over |Q|, BC term on demonstration rows), one temperature
        step."""
        dist = self.actor.distribution(batch["features"])
        raw = dist.sample()  # reparameterised
        log_prob = dist.log_prob(raw)
        self.critic.requires_grad_(False)  # gradients reach the action, not the critics' weights
        q = self.critic(self.critic_input(batch), raw.clamp(-1.0, 1.0)).mean(dim=0)
        self.critic.requires_grad_(True)
        q_scale = q.abs().mean().detach().clamp(min=1.0)  # shrinks large Q scales only
        sac = (self.alpha * log_prob - q).mean() / q_scale
        demo = batch["demo"]
        bc = (self.actor.bc_error(batch["features"][demo], batch["label"][demo]).mean()
              if bool(demo.any()) else torch.zeros((), device=q.device))
        loss = sac + bc_weight * bc
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        return {"actor_loss": sac.item(), "bc_error": bc.item(), "alpha": self.alpha.item(),
                "entropy": -log_prob.mean().item()}

    # --- checkpoint ----------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """Critics, targets and temperature as one flat dict for safetensors."""
        out = {f"critic.{k}": v for k, v in self.critic.state_dict().items()}
        out.update({f"target.{k}": v for k, v in self.target.state_dict().items()})
        out["log_alpha"] = self.log_alpha.detach().reshape(1)
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for prefix, module in (("critic.", self.critic), ("target.", self.target)):
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                    if k.startswith(prefix)})
        with torch.no_grad():
            self.log_alpha.copy_(tensors["log_alpha"].reshape(()))

    def optimizer_state(self) -> dict[str, Any]:
        return {"actor_opt": self.actor_opt.state_dict(),
                "critic_opt": self.critic_opt.state_dict(),
                "alpha_opt": self.alpha_opt.state_dict(),
                "generator": self.generator.get_state()}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self.generator.set_state(state["generator"])


# ----------------------------------------------------------------------------- env, checkpoint
def env_kwargs(cfg: RLPDConfig, policy_config: VLAPolicyConfig) -> dict[str, Any]:
    """:func:`~vla_sim.agents.training.rl_common.make_training_env` arguments of this run's
    training envs (the demonstrations are replayed in the same stack)."""
    return {"env_id": cfg.env_id, "policy_config": config_to_dict(policy_config),
            "reward": cfg.reward, "gamma": cfg.gamma, "robot": cfg.robot,
            "randomization": cfg.randomization, "text_encoder": cfg.text_encoder,
            "max_episode_steps": cfg.max_episode_steps}


def make_vec_env(cfg: RLPDConfig, policy_config: VLAPolicyConfig, seed: int):
    """DummyVecEnv (1 env) or SubprocVecEnv (a process per env) of the training env stack.
    SB3's vector envs reset a finished env themselves and hand back its last observation as
    ``info["terminal_observation"]`` and the time limit as ``info["TimeLimit.truncated"]``."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    factory = env_factory(**env_kwargs(cfg, policy_config),
                          torch_threads=1 if cfg.n_envs > 1 else 0)
    vec = SubprocVecEnv([factory] * cfg.n_envs) if cfg.n_envs > 1 else DummyVecEnv([factory])
    vec.seed(seed)
    return vec


def _save_state(state_dir: Path, policy: VLAPolicy, learner: RLPDLearner,
                buffers: dict[str, TransitionBuffer], state: dict[str, Any],
                meta: dict[str, Any]) -> None:
    """``save_training_checkpoint`` (policy + trainer_state.pt) plus the critics and the
    buffers, written beside and renamed into place."""
    from safetensors.torch import save_file

    tmp = state_dir.with_name(f".{state_dir.name}.rlpd")
    save_training_checkpoint(tmp, policy, state, meta)
    save_file(learner.tensors(), str(tmp / CRITICS_FILE))
    arrays: dict[str, np.ndarray] = {}
    for name, buffer in buffers.items():
        arrays.update(buffer.state(name))
    np.savez(tmp / REPLAY_FILE, **arrays)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    os.replace(tmp, state_dir)


def _restore(state_dir: Path, policy: VLAPolicy, learner: RLPDLearner,
             online: TransitionBuffer) -> tuple[dict[str, Any], TransitionBuffer | None]:
    """Load a ``checkpoints/last_state`` folder into a freshly built run (same config): the
    policy, critics, optimizers, RNGs and the online buffer; returns the trainer state and
    the demonstration buffer."""
    from safetensors.torch import load_file

    from vla_sim.agents.policies.checkpoint import load_state_strict, read_weights

    load_state_strict(policy, read_weights(state_dir / "model.safetensors"), str(state_dir))
    learner.load_tensors(load_file(str(state_dir / CRITICS_FILE)))
    state = load_trainer_state(state_dir)
    learner.load_optimizer_state(state)
    torch.set_rng_state(state["torch_rng"])
    demo = None
    with np.load(state_dir / REPLAY_FILE, allow_pickle=False) as arrays:
        online.load_state(arrays, "online")
        if "demo__pos" in arrays.files:
            dims = {k[len("demo__"):]: arrays[k].shape[1] for k in arrays.files
                    if k.startswith("demo__") and k != "demo__pos"}
            demo = TransitionBuffer(int(arrays["demo__pos"][1]), dims)
            demo.load_state(arrays, "demo")
    return state, demo


def _step_rows(obs: dict[str, np.ndarray], features: np.ndarray, actions: np.ndarray,
               rewards: np.ndarray, dones: np.ndarray, infos: list[dict], next_obs: dict,
               next_features: np.ndarray, encoder: nn.Module, device: torch.device
               ) -> dict[str, np.ndarray]:
    """One vector step's transitions; a finished env's next observation is its terminal one
    (SB3 has already reset it), encoded here."""
    done = np.flatnonzero(dones)
    next_feat, next_priv = next_features.copy(), None
    if PRIVILEGED in next_obs:
        next_priv = np.array(next_obs[PRIVILEGED], np.float32)
    if len(done):
        terminal = {k: np.stack([infos[i]["terminal_observation"][k] for i in done])
                    for k in next_obs}
        next_feat[done] = encode(encoder, terminal, device)
        if next_priv is not None:
            next_priv[done] = terminal[PRIVILEGED]
    truncated = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos])
    rows = {"features": features, "next_features": next_feat, "action": actions,
            "label": actions, "reward": rewards,
            "terminated": (np.asarray(dones, bool) & ~truncated).astype(np.float32)}
    if next_priv is not None:
        rows.update(privileged=obs[PRIVILEGED], next_privileged=next_priv)
    return rows


# ------------------------------------------------------------------------------- entry point
def train_rlpd(cfg: RLPDConfig, out_dir: str | Path, init: str | Path | None = None,
               resume: bool = False) -> RLResult:
    """Fine-tune with RLPD; writes ``best/``, ``last/`` (save_policy format), ``tb/``,
    ``rlpd_config.json``, the resumable ``checkpoints/last_state``, ``curve.csv``,
    ``curves.png`` and ``summary.json`` (throughput, wall-clock split, the curve; its
    ``updates`` count critic gradient steps, the actor's step timed with them, and ``demos``
    says how many episodes replayed). ``resume=True`` continues from
    ``checkpoints/last_state`` (same config and ``init``; see the module docstring)."""
    if cfg.demo_fraction > 0 and not cfg.demos:
        raise ValueError("demos: a dataset folder is needed when demo_fraction > 0 (the BC "
                         "dataset), or set demo_fraction=0 for SAC without demonstrations")
    out = Path(out_dir)
    state_dir = out / "checkpoints" / "last_state"
    prepare_run(out, "rlpd_config.json", {**config_to_dict(cfg), "init": str(init)}, resume,
                "RLPD", state_dir, defaults=config_defaults(cfg))
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()

    # ---- policy, frozen encoder, actor, critics, buffers ---------------------------------------
    policy = load_warm_start(init, VLAPolicyConfig(**cfg.policy) if init is None else None,
                             cfg.init_log_std, cfg.seed,
                             asymmetric_critic=cfg.asymmetric_critic).to(device)
    policy.text_encoder = get_text_encoder(cfg.text_encoder)
    encoder, actor, feature_dim = split_policy(policy, cfg.actor_layers)
    privileged_dim = policy.config.critic_privileged_dim
    action_dim = policy.config.action_dim
    learner = RLPDLearner(cfg, actor, feature_dim + privileged_dim, action_dim, device)
    online = TransitionBuffer(cfg.buffer_size, buffer_dims(feature_dim, privileged_dim,
                                                           action_dim))
    demo: TransitionBuffer | None = None
    demo_info: dict[str, Any] = {}
    logger = ScalarLogger(out / "tb" if cfg.tensorboard else None)
    meta = {"trainer": "rlpd", "init": str(init), "reward": cfg.reward, "env_id": cfg.env_id}
    checks = SuccessChecks(out, meta)
    stats = RunStats(out, f"RLPD {cfg.env_id} reward={cfg.reward} n_envs={cfg.n_envs}")
    step, next_eval, last_ckpt = 0, cfg.eval_every_env_steps, 0

    def evaluate(at: int) -> None:
        logger.scalars({"eval/success_rate": checks.check(policy, cfg, at, stats)}, at)

    def checkpoint() -> None:
        state = {"step": step, "next_eval": next_eval, "torch_rng": torch.get_rng_state(),
                 **checks.state(), "run_stats": stats.state(), "demo_info": demo_info,
                 **learner.optimizer_state()}
        buffers = {"online": online, **({"demo": demo} if demo is not None else {})}
        _save_state(state_dir, policy, learner, buffers, state, {**meta, "step": step})

    if resume:
        state, demo = _restore(state_dir, policy, learner, online)
        step, next_eval, last_ckpt = int(state["step"]), int(state["next_eval"]), int(state["step"])
        checks.load_state(state)
        stats = RunStats(out, stats.title, state["run_stats"])
        demo_info = dict(state["demo_info"])
        log.info("resuming RLPD from %s at env step %d/%d (%d online, %d demo transitions)",
                 state_dir, step, cfg.total_env_steps, len(online), len(demo or []))
    else:
        if cfg.demo_fraction > 0:
            replay_env = make_training_env(**env_kwargs(cfg, policy.config), torch_threads=0)
            try:
                demo, demo_info = replay_demonstrations(cfg.demos, replay_env, encoder, device,
                                                        cfg.demo_episodes)
            finally:
                replay_env.close()
        evaluate(0)  # the warm start's own success rate is the bar to beat

    # ---- the loop: one vector step, then utd_ratio critic updates and one actor update per env
    envs = make_vec_env(cfg, policy.config, TRAIN_BASE_SEED + 1000 * cfg.seed + step)
    n_envs = cfg.n_envs
    deadline = t0 + 60.0 * cfg.max_minutes if cfg.max_minutes > 0 else None  # replay counts
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    returns, episode_returns, episode_successes = np.zeros(n_envs), [], []
    next_log = step + LOG_EVERY_ENV_STEPS

    def tally(values: dict[str, float]) -> None:
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1

    try:
        with stats.timed("rollout"):
            obs = envs.reset()
            features = encode(encoder, obs, device)
        while step < cfg.total_env_steps:
            if deadline is not None and time.perf_counter() >= deadline:
                log.info("RLPD stopped by max_minutes=%s at env step %d", cfg.max_minutes, step)
                break
            # ---- 1-2. act, step the envs, store the transitions ----------------------------------
            with stats.timed("rollout"):
                with torch.no_grad():
                    dist = actor.distribution(torch.as_tensor(features).to(device))
                    actions = dist.sample().clamp(-1.0, 1.0).cpu().numpy()
                next_obs, rewards, dones, infos = envs.step(actions)
                next_features = encode(encoder, next_obs, device)
                online.add(_step_rows(obs, features, actions, rewards, dones, infos, next_obs,
                                      next_features, encoder, device))
                obs, features = next_obs, next_features
            step += n_envs
            stats.rollout_steps += n_envs
            returns += rewards
            for i in np.flatnonzero(dones):
                episode_returns.append(float(returns[i]))
                episode_successes.append(float(bool(infos[i].get("is_success", False))))
                returns[i] = 0.0

            # ---- 3-4. utd_ratio critic updates and one actor update per env step ----------------
            if step >= cfg.learning_starts:
                bc_weight = bc_schedule(cfg.bc_coef, cfg.bc_decay_env_steps, step)
                with stats.timed("update"):
                    for _ in range(n_envs):
                        for _ in range(cfg.utd_ratio):
                            batch = sample_batch(demo, online, cfg.batch_size, cfg.demo_fraction,
                                                 learner.generator, device)
                            tally(learner.update_critic(batch))
                            stats.updates += 1
                        if step >= cfg.critic_warmup_env_steps:
                            tally(learner.update_actor(batch, bc_weight))
                tally({"bc_weight": bc_weight})

            # ---- logging, evaluation, checkpoints -------------------------------------------------
            if step >= next_log:
                next_log += LOG_EVERY_ENV_STEPS
                scalars = {f"train/{k}": sums[k] / counts[k] for k in sums}
                if episode_returns:
                    scalars.update({"rollout/ep_rew_mean": float(np.mean(episode_returns)),
                                    "rollout/success_rate": float(np.mean(episode_successes))})
                logger.scalars(scalars, step)
                sums.clear()
                counts.clear()
                episode_returns.clear()
                episode_successes.clear()
            if cfg.eval_every_env_steps and step >= next_eval and step < cfg.total_env_steps:
                next_eval += cfg.eval_every_env_steps
                evaluate(step)
            if step - last_ckpt >= cfg.checkpoint_every_env_steps and step < cfg.total_env_steps:
                last_ckpt = step
                checkpoint()
        checkpoint()
        evaluate(step)
        save_policy(policy, out / "last", meta={**meta, "step": step})
    finally:
        logger.close()
        envs.close()
    summary = stats.finish(step, {
        "trainer": "rlpd", "n_envs": n_envs, "utd_ratio": cfg.utd_ratio,
        "ensemble_size": cfg.ensemble_size, "batch_size": cfg.batch_size,
        "demo_fraction": cfg.demo_fraction, "demos": demo_info,
        "online_transitions": len(online), "replay_bytes": online.nbytes()
        + (demo.nbytes() if demo is not None else 0),
        "asymmetric_critic": cfg.asymmetric_critic, "best_success": checks.best})
    return RLResult(out, step, time.perf_counter() - t0, checks.history, checks.best,
                    summary)


__all__ = ["Actor", "QEnsemble", "RLPDConfig", "RLPDLearner", "TransitionBuffer", "encode",
           "env_kwargs", "make_vec_env", "replay_demonstrations", "sample_batch", "split_policy",
           "train_rlpd"]
