"""Behaviour cloning of the VLA policy from demonstrations.

Reads top to bottom like the algorithm: arrays in memory -> instruction features once per
unique instruction -> split by episode -> for each step: sample a batch, augment, loss, AdamW
step with clipping and a warm-up + cosine LR -> periodic validation, in-sim evaluation and
checkpoints.

Every random draw of step ``t`` comes from a generator seeded with ``(seed, t)``, so resuming
from a checkpoint reproduces the losses of an uninterrupted run exactly (same device, same
threads).

Under ``torchrun`` (:mod:`.distributed`) every process draws the same global batch of
``batch_size`` steps, encodes its own rows, and the loss is computed on the gathered features
of the whole batch, so N processes follow the one-process run to float rounding; rank 0 alone
validates, evaluates and writes. On CUDA the demonstrations move to the GPU once when they fit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from vla_sim.agents.policies.checkpoint import (
    load_state_strict,
    read_checkpoint_config,
    read_weights,
)
from vla_sim.agents.policies.config import VLAPolicyConfig
from vla_sim.agents.policies.vla import VLAPolicy
from vla_sim.config import config_from_dict, config_to_dict
from vla_sim.data.demos import DemoArrays, chunk_indices, split_episodes
from vla_sim.envs.goal_state import GOAL_STATE_DIM, GOAL_STATE_LAYOUT, GOAL_XYZ_DIM

from . import distributed
from .common import (
    RESUME_FREE_KEYS,
    ScalarLogger,
    config_defaults,
    load_trainer_state,
    prepare_run,
    publish_checkpoint,
    resolve_device,
    save_training_checkpoint,
)
from .configs import BCConfig
from .loop import SupervisedLoop, adamw, cosine_with_warmup, decay_groups

# Settings that may change between an interrupted run and its resume without changing the maths.
log = logging.getLogger(__name__)

# Beyond the common ones (common.RESUME_FREE_KEYS): knobs that do not change the maths.
RESUMABLE_CHANGES = ("steps_this_run", "eval_every_grad_steps", "checkpoint_every_grad_steps",
                     "log_every_grad_steps", "val_every_grad_steps", "device", "precision")


def instruction_alternatives(data: DemoArrays, k: int, seed: int
                             ) -> tuple[list[str], np.ndarray]:
    """(instructions extended with the new wordings, (N, k) ids of each step's alternatives,
    -1 where fewer than k distinct ones exist). Seeded per episode, so a resumed run rebuilds
    the same table."""
    from vla_sim.language.instructions import paraphrases

    if not data.episode_roles:
        raise ValueError("instruction_aug > 0 needs the episodes' roles (which objects each "
                         "instruction names); this dataset was collected without them - "
                         "recollect it with `vla-sim collect`")
    instructions = list(data.instructions)
    lookup = {s: i for i, s in enumerate(instructions)}
    per_episode: dict[int, list[int]] = {}
    for ep in np.unique(data.episode_index):
        info = data.episode_roles.get(int(ep))
        if info is None:
            raise ValueError(f"episode {int(ep)} has no recorded roles; instruction_aug needs "
                             "them for every episode")
        texts = paraphrases(info["task"], info["roles"], k,
                            np.random.default_rng([seed, 9, int(ep)]))
        per_episode[int(ep)] = [lookup.setdefault(s, len(lookup)) for s in texts]
    instructions = list(lookup)
    table = np.full((len(data.episode_index), k), -1, np.int64)
    for ep, ids in per_episode.items():
        table[data.episode_index == ep, :len(ids)] = ids
    return instructions, table


def instruction_features(encoder: Any, instructions: Sequence[str], cfg: VLAPolicyConfig
                         ) -> dict[str, torch.Tensor]:
    """Encoder features of each distinct instruction, (U, ...) tensors (encoded once each, in
    batches where the encoder can: ``batch_features``; a dataset's feature cache,
    :class:`vla_sim.data.text_cache.CachedTextEncoder`, serves them without the encoder)."""
    encode = getattr(encoder, "batch_features", None) or encoder.features
    feats = encode(list(instructions), cfg.max_tokens)
    if feats["instruction_embedding"].shape[1] != cfg.text_dim:
        raise ValueError(f"text encoder gives {feats['instruction_embedding'].shape[1]}-d vectors, "
                         f"policy.text_dim is {cfg.text_dim}")
    keys = ["instruction_embedding"] + (["instruction_tokens", "instruction_mask"]
                                        if cfg.use_tokens else [])
    return {k: torch.from_numpy(np.ascontiguousarray(feats[k])) for k in keys}


# ------------------------------------------------------------------------------ augmentation
def augment(images: torch.Tensor, rng: np.random.Generator, shift_pad: int, jitter: float
            ) -> torch.Tensor:
    """Float (B,3,S,S) in [0,1] -> randomly shifted, brightness/contrast-jittered copy."""
    return augment_with_shift(images, rng, shift_pad, jitter)[0]


def augment_with_shift(images: torch.Tensor, rng: np.random.Generator, shift_pad: int,
                       jitter: float) -> tuple[torch.Tensor, np.ndarray]:
    """:func:`augment` (the same draws), also returning how far each image's content moved:
    (B, 2) pixels along x (columns) and y (rows), for labels that live in image coordinates."""
    draws = draw_augmentation(rng, len(images), shift_pad, jitter)
    return apply_augmentation(images, *draws, shift_pad), content_shift(draws[0], len(images),
                                                                       shift_pad)


def draw_augmentation(rng: np.random.Generator, batch: int, shift_pad: int, jitter: float
                      ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The random numbers of :func:`augment` for ``batch`` images: crop offsets (B, 2) (rows,
    columns; None without shifts) and brightness/contrast factors (B, 2) (None without
    jitter). Drawn for a whole global batch by every process, applied to its own rows."""
    offsets = rng.integers(0, 2 * shift_pad + 1, size=(batch, 2)) if shift_pad > 0 else None
    factors = (rng.uniform(1 - jitter, 1 + jitter, size=(batch, 2)).astype(np.float32)
               if jitter > 0 else None)
    return offsets, factors


def apply_augmentation(images: torch.Tensor, offsets: np.ndarray | None,
                       factors: np.ndarray | None, shift_pad: int) -> torch.Tensor:
    """Float (B,3,S,S) in [0,1] shifted by ``offsets`` (replicate padding, crop) and jittered
    by ``factors`` (:func:`draw_augmentation`), on the images' device."""
    b, _, s, _ = images.shape
    if offsets is not None:
        c, side = images.shape[1], s + 2 * shift_pad
        padded = torch.nn.functional.pad(images, (shift_pad,) * 4, mode="replicate")
        # One gather for the whole batch (not a crop per image: one kernel on a GPU).
        span = torch.arange(s, device=images.device)
        off = torch.from_numpy(np.ascontiguousarray(offsets)).to(images.device)
        flat = ((off[:, 0, None] + span)[:, :, None] * side
                + (off[:, 1, None] + span)[:, None, :])  # (B, S, S) into the padded image
        images = padded.reshape(b, c, side * side).gather(
            2, flat.reshape(b, 1, s * s).expand(b, c, s * s)).reshape(b, c, s, s)
    if factors is not None:
        f = torch.from_numpy(factors).to(images.device)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * f[:, 1, None, None, None] + mean  # contrast
        images = (images * f[:, 0, None, None, None]).clamp(0.0, 1.0)  # brightness
    return images


def content_shift(offsets: np.ndarray | None, batch: int, shift_pad: int) -> np.ndarray:
    """(B, 2) pixels each image's content moved along x and y under crop ``offsets``."""
    if offsets is None:
        return np.zeros((batch, 2), np.float32)
    # Output pixel p shows input pixel p + offset - pad: content moves by pad - offset.
    return (shift_pad - offsets[:, ::-1]).astype(np.float32)


def grounding_targets(env_states: torch.Tensor, cameras: Sequence[str], image_size: int,
                      moved: Sequence[np.ndarray | None] | None = None) -> dict[str, torch.Tensor]:
    """The grounding head's targets from goal states laid out as ``GOAL_STATE_LAYOUT``:
    ``uv`` (B, cams, 3, 2) normalised image coordinates of the object, the destination and the
    current target (the destination while holding the object, else the object), ``visible``
    (B, cams, 3) and ``holding`` (B,). ``moved``: per camera, the augmentation's content shift
    in pixels (B, 2) (:func:`augment_with_shift`), applied to the labels; a label shifted out
    of the image is no longer visible."""
    holding = env_states[:, GOAL_STATE_LAYOUT["holding"]].squeeze(-1) > 0.5
    uvs, visibles = [], []
    for i, cam in enumerate(cameras):
        obj = env_states[:, GOAL_STATE_LAYOUT[f"{cam}_object_uv"]]
        dest = env_states[:, GOAL_STATE_LAYOUT[f"{cam}_destination_uv"]]
        vis = env_states[:, GOAL_STATE_LAYOUT[f"{cam}_visible"]] > 0.5  # (B, 2)
        uv = torch.stack([obj, dest], 1)  # (B, 2, 2)
        if moved is not None and moved[i] is not None:
            uv = uv + torch.as_tensor(moved[i] * 2.0 / image_size, device=uv.device)[:, None]
            vis = vis & (uv.abs() <= 1.0).all(-1)
        current = torch.where(holding[:, None, None], uv[:, 1:2], uv[:, 0:1])
        current_vis = torch.where(holding[:, None], vis[:, 1:2], vis[:, 0:1])
        uvs.append(torch.cat([uv, current], 1))
        visibles.append(torch.cat([vis, current_vis], 1))
    return {"uv": torch.stack(uvs, 1), "visible": torch.stack(visibles, 1).float(),
            "holding": holding.float()}


class _Batches:
    """Index arrays into batches of policy-ready tensors on ``device``.

    On a CUDA device the arrays move to the GPU once when they fit in half its free memory
    (indexing, augmentation and text lookup then run there); otherwise each batch is copied
    from pinned host memory without blocking."""

    def __init__(self, data: DemoArrays, text: dict[str, torch.Tensor], cfg: VLAPolicyConfig,
                 device: torch.device, alternatives: np.ndarray | None = None,
                 alt_prob: float = 0.0):
        self.images = {k: torch.from_numpy(np.ascontiguousarray(data.images[k]))
                       for k in cfg.image_keys}
        self.states = torch.from_numpy(np.ascontiguousarray(data.states, np.float32))
        self.actions = torch.from_numpy(np.ascontiguousarray(data.actions, np.float32))
        self.instr = torch.from_numpy(np.asarray(data.instruction_index, np.int64))
        self.env_states = (None if data.env_states is None else
                           torch.from_numpy(np.ascontiguousarray(data.env_states, np.float32)))
        self.text = text
        self.image_keys, self.device = cfg.image_keys, device
        self.resident = device.type == "cuda" and _fits_on(device, [
            *self.images.values(), self.states, self.actions, self.env_states, *text.values()])
        if self.resident:
            self.images = {k: v.to(device) for k, v in self.images.items()}
            self.states, self.actions = self.states.to(device), self.actions.to(device)
            if self.env_states is not None:
                self.env_states = self.env_states.to(device)
        self.text = {k: v.to(device) for k, v in text.items()}  # small: always on the device
        self.aux_dim = cfg.aux_dim
        self.cameras, self.image_size = list(cfg.cameras), cfg.image_size
        # (N, K) instruction ids of other wordings per step (-1 = none), for augmentation.
        self.alternatives, self.alt_prob = alternatives, alt_prob
        self.chunk_ids = self.chunk_mask = None
        if cfg.action_chunk > 1:
            self.chunk_ids, self.chunk_mask = chunk_indices(data.episode_index, cfg.action_chunk)

    def _take(self, array: torch.Tensor, ids: np.ndarray) -> torch.Tensor:
        """``array[ids]`` on the device."""
        if self.resident:
            return array[torch.from_numpy(np.ascontiguousarray(ids)).to(self.device)]
        rows = array[torch.from_numpy(np.ascontiguousarray(ids))]
        if self.device.type == "cuda":
            return rows.pin_memory().to(self.device, non_blocking=True)
        return rows.to(self.device)

    def get(self, ids: np.ndarray, rng: np.random.Generator | None = None,
            shift_pad: int = 0, jitter: float = 0.0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return self.get_with_shifts(ids, rng, shift_pad, jitter)[:2]

    def get_with_shifts(self, ids: np.ndarray, rng: np.random.Generator | None = None,
                        shift_pad: int = 0, jitter: float = 0.0, rows: slice | None = None
                        ) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[np.ndarray | None]]:
        """:meth:`get`, plus each camera's augmentation shift (B, 2) in pixels (None unshifted).

        ``rows``: build the observations of ``ids[rows]`` only (this process's share of a
        global batch, :mod:`.distributed`); every random draw is still made for all of ``ids``
        (so every process draws the same numbers), and the actions and shifts are those of all
        of ``ids`` (the loss's targets for the whole global batch)."""
        local = ids if rows is None else ids[rows]

        def mine(values: np.ndarray | None) -> np.ndarray | None:
            return values if values is None or rows is None else values[rows]

        obs: dict[str, torch.Tensor] = {}
        moved: list[np.ndarray | None] = []
        for key in self.image_keys:
            img = self._take(self.images[key], local).permute(0, 3, 1, 2).float().div_(255.0)
            if rng is not None:
                offsets, factors = draw_augmentation(rng, len(ids), shift_pad, jitter)
                img = apply_augmentation(img, mine(offsets), mine(factors), shift_pad)
                moved.append(content_shift(offsets, len(ids), shift_pad))
            else:
                moved.append(None)
            obs[key] = img
        obs["state"] = self._take(self.states, local)
        t = self.instr[torch.from_numpy(ids)].numpy()
        if rng is not None and self.alternatives is not None and self.alt_prob > 0:
            t = self._augment_instructions(ids, t, rng)
        t = torch.from_numpy(np.ascontiguousarray(mine(t)))
        for key, value in self.text.items():
            obs[key] = value[t.to(value.device)]
        return obs, self._take(self.actions, ids), moved

    def _augment_instructions(self, ids: np.ndarray, t: np.ndarray, rng: np.random.Generator
                              ) -> np.ndarray:
        alts = self.alternatives[ids]  # (B, K)
        col = rng.integers(0, alts.shape[1], size=len(ids))
        pick = alts[np.arange(len(ids)), col]
        use = (rng.random(len(ids)) < self.alt_prob) & (pick >= 0)
        return np.where(use, pick, t)

    def chunk(self, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(next ``action_chunk`` actions (B, chunk, A), mask (B, chunk) of real steps)."""
        rows = self.chunk_ids[ids]
        return (self._take(self.actions, rows.reshape(-1)).reshape(*rows.shape, -1),
                torch.from_numpy(self.chunk_mask[ids]).to(self.device))

    def env_state(self, ids: np.ndarray) -> torch.Tensor | None:
        """Goal-state targets of the auxiliary loss: the first ``policy.aux_dim`` values of the
        goal state (None when the data has none)."""
        if self.env_states is None:
            return None
        return self._take(self.env_states, ids)[:, :self.aux_dim]

    def grounding(self, ids: np.ndarray, moved: Sequence[np.ndarray | None] | None = None
                  ) -> dict[str, torch.Tensor]:
        """Grounding targets (:func:`grounding_targets`) of steps ``ids``."""
        return grounding_targets(self._take(self.env_states, ids), self.cameras,
                                 self.image_size, moved)


def _fits_on(device: torch.device, tensors: Sequence[torch.Tensor | None]) -> bool:
    """Whether ``tensors`` take at most half of ``device``'s free memory."""
    need = sum(t.numel() * t.element_size() for t in tensors if t is not None)
    try:
        free, _total = torch.cuda.mem_get_info(device)
    except (RuntimeError, AssertionError):
        return False
    return need <= free // 2


def scene_labels(scene: _Batches, ids: np.ndarray, moved: Sequence[np.ndarray | None] | None,
                 aux: bool, ground: bool) -> tuple[torch.Tensor | None, dict | None]:
    """(goal-state, grounding) targets of scene frames ``ids``, None where not wanted. A
    teleported gripper's contacts are never simulated, so scene frames have no "holding"
    label."""
    targets = None
    if ground:
        targets = scene.grounding(ids, moved)
        targets.pop("holding")
    return (scene.env_state(ids) if aux else None), targets


# ----------------------------------------------------------------------------------- training
def batch_sampler(batches: _Batches, train_ids: np.ndarray, cfg: BCConfig,
                  rows: slice | None = None, scene: _Batches | None = None,
                  scene_rows: slice | None = None) -> Callable[[np.random.Generator], tuple]:
    """``rng -> batch`` of one BC step: ``batch_size`` training steps drawn with ``rng``,
    augmented, with their targets; with ``scene`` (scene frames) also ``scene_batch`` of those,
    with their goal-state and grounding targets (else None: the draws are then exactly those of
    a run without). ``rows`` / ``scene_rows``: observations of that share of each global batch
    only (:mod:`.distributed`); the draws and the targets are always the global batch's."""
    pcfg = cfg.policy

    def sample_scene(rng: np.random.Generator) -> tuple | None:
        if scene is None:
            return None
        ids = rng.integers(0, len(scene.states), cfg.scene_batch)
        obs, _actions, moved = scene.get_with_shifts(ids, rng, cfg.shift_pad, cfg.color_jitter,
                                                     scene_rows)
        return (obs, *scene_labels(scene, ids, moved, cfg.aux_weight > 0,
                                   cfg.ground_weight > 0))

    def sample(rng: np.random.Generator) -> tuple:
        ids = train_ids[rng.integers(0, len(train_ids), cfg.batch_size)]
        obs, actions, moved = batches.get_with_shifts(ids, rng, cfg.shift_pad, cfg.color_jitter,
                                                      rows)
        mask = None
        if pcfg.action_chunk > 1:
            actions, mask = batches.chunk(ids)
        ground = batches.grounding(ids, moved) if cfg.ground_weight > 0 else None
        return obs, actions, batches.env_state(ids), mask, ground, sample_scene(rng)

    return sample


def loss_function(policy: VLAPolicy, cfg: BCConfig, device: torch.device,
                  dist: distributed.Distributed | None = None) -> Callable[[tuple], torch.Tensor]:
    """``batch -> loss`` of one BC step (:func:`batch_sampler`'s batches).

    Several processes: the extractor (where the compute is) runs on this process's rows and
    its outputs are gathered, so the heads and every masked mean (action-chunk padding,
    grounding visibility) see the global batch and every process computes the one-process
    loss. Scene frames (the batch's last item) add their goal-state and grounding terms."""
    dist = dist or distributed.Distributed()

    def loss(batch: tuple) -> torch.Tensor:
        obs, actions, env_state, mask, ground, scene = batch
        with dist.gathered(policy.extractor, "forward_with_spatial"), autocast(cfg, device):
            if scene is None:
                return policy.bc_loss(obs, actions, env_state, cfg.aux_weight, mask,
                                      ground_target=ground,
                                      ground_weight=cfg.ground_weight).float()
            s_obs, s_aux, s_ground = scene
            if dist.active or not _stackable(obs, s_obs):
                features, spatial = policy.extractor.forward_with_spatial(obs)
                s_features, s_spatial = policy.extractor.forward_with_spatial(s_obs)
            else:  # one extractor pass over both batches: the same outputs, less overhead
                n = len(actions)
                both, both_spatial = policy.extractor.forward_with_spatial(
                    {k: torch.cat([v, s_obs[k]]) for k, v in obs.items()})
                features, s_features = both[:n], both[n:]
                spatial, s_spatial = ((None, None) if both_spatial is None else
                                      ({k: v[:n] for k, v in both_spatial.items()},
                                       {k: v[n:] for k, v in both_spatial.items()}))
            value = policy.perception_loss(features, spatial, env_state, cfg.aux_weight, ground,
                                           cfg.ground_weight,
                                           policy.action_loss(features, actions, mask))
            return policy.perception_loss(s_features, s_spatial, s_aux, cfg.aux_weight,
                                          s_ground, cfg.ground_weight, value).float()

    return loss


@dataclass
class BCResult:
    out_dir: Path
    steps: int
    train_losses: list[float]
    val_loss: float | None
    best_metric: float | None
    best_kind: str
    samples_per_s: float
    wall_s: float


@torch.no_grad()
def validation_metrics(policy: VLAPolicy, batches: _Batches, ids: np.ndarray, batch_size: int,
                       loss: bool = True, grounding: bool = False, seed: int = 0
                       ) -> dict[str, float]:
    """Metrics on un-augmented steps ``ids``, from one forward pass per batch (a second pass
    for the grounding metrics cost every DAgger round ~0.6 s). The flow head's loss draws
    noise: from torch's generator seeded with ``seed`` (and restored after), so the same
    weights give the same validation loss in any process, resumed or not.

    - ``loss``: ``val/loss``, the action term of :meth:`VLAPolicy.bc_loss` (what training
      minimises beside the perception terms);
    - ``grounding``: where the grounding head looks: per camera and slot (object, destination,
      target) ``val/ground_px/<camera>_<slot>``, the mean distance in pixels between predicted
      and labelled image coordinates where the label is visible, and ``val/phase_accuracy``,
      the holding flag's accuracy."""
    device = next(policy.parameters()).device
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        return _validation_metrics(policy, batches, ids, batch_size, loss, grounding)


def _validation_metrics(policy: VLAPolicy, batches: _Batches, ids: np.ndarray, batch_size: int,
                        loss: bool, grounding: bool) -> dict[str, float]:
    from vla_sim.agents.policies.vla import GROUND_SLOTS

    policy.eval()
    total = 0.0
    err = torch.zeros(len(batches.cameras), len(GROUND_SLOTS))
    count = torch.zeros_like(err)
    correct = 0.0
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        obs, actions = batches.get(chunk)
        features, spatial = policy.extractor.forward_with_spatial(obs)
        if loss:
            total += float(policy.action_loss(features, actions)) * len(chunk)
        if grounding:
            xy, phase = policy.ground_head.predict(features, spatial)
            target = batches.grounding(chunk)
            pixels = (xy - target["uv"]).norm(dim=-1).cpu() * batches.image_size / 2.0
            vis = target["visible"].cpu()
            err += (pixels * vis).sum(0)
            count += vis.sum(0)
            correct += float(((phase > 0).float() == target["holding"]).float().sum())
    policy.train()
    out: dict[str, float] = {}
    if loss:
        out["val/loss"] = total / max(1, len(ids))
    if grounding:
        out.update({f"val/ground_px/{cam}_{slot}": float(err[i, j] / count[i, j].clamp(min=1))
                    for i, cam in enumerate(batches.cameras)
                    for j, slot in enumerate(GROUND_SLOTS)})
        out["val/phase_accuracy"] = correct / max(1, len(ids))
    return out


def grounding_metrics(policy: VLAPolicy, batches: _Batches, ids: np.ndarray, batch_size: int
                      ) -> dict[str, float]:
    """The grounding half of :func:`validation_metrics`."""
    return validation_metrics(policy, batches, ids, batch_size, loss=False, grounding=True)


def train_bc(data: DemoArrays, out_dir: str | Path, config: BCConfig | None = None,
             resume: bool = False, eval_fn: Callable[[VLAPolicy], float] | None = None,
             encoder: Any = None, init_fn: Callable[[VLAPolicy], Any] | None = None,
             scene_frames: DemoArrays | None = None) -> BCResult:
    """Train a :class:`VLAPolicy` by behaviour cloning; checkpoints go to ``out_dir``.

    Layout: ``checkpoints/step_XXXXXX/`` (policy + ``trainer_state.pt``), ``last/`` (latest),
    ``best/`` (best in-sim success from ``eval_fn`` if given, else lowest val loss, else last),
    ``tb/`` (TensorBoard), ``bc_config.json``.

    Args:
        data: demonstrations; their dims must fit ``config.policy``.
        resume: continue from ``out_dir/last`` (same config required, bar logging/eval knobs).
        eval_fn: ``policy -> success rate in [0, 1]`` run every ``eval_every_grad_steps`` steps and at the end.
        encoder: text encoder with ``features(list[str], max_tokens)``; default the shared one.
        init_fn: called on the freshly built, normalised policy of a new run before the
            optimiser exists (e.g. to copy a pre-trained vision encoder); not called on resume,
            where the weights come from the checkpoint.
        scene_frames: labelled frames without actions (:mod:`vla_sim.data.scene_frames`):
            ``scene_batch`` of them per step train the goal-state and grounding losses.

    Launched by ``torchrun`` (``WORLD_SIZE`` > 1) or inside an existing process group, it
    trains data-parallel (gloo on the CPU, NCCL on CUDA); ``batch_size`` stays the global
    batch and must divide by the number of processes. Only rank 0's result carries the
    validation and ``best`` figures.
    """
    cfg = config or BCConfig()
    pcfg = cfg.policy
    out = Path(out_dir)
    if cfg.aux_weight > 0:
        if data.env_states is None:
            raise ValueError("aux_weight > 0 needs demonstrations with a goal state "
                             "(observation.environment_state); this dataset has none - "
                             "recollect it with `vla-sim collect`")
        size = int(data.env_states.shape[1])
        if pcfg.aux_dim == 0:
            # The positions (the layout's first GOAL_XYZ_DIM values; all of an old dataset's).
            pcfg.aux_dim = min(size, GOAL_XYZ_DIM)
        elif pcfg.aux_dim > size:
            raise ValueError(f"policy.aux_dim {pcfg.aux_dim} > the dataset's goal-state size "
                             f"{size}")
    if cfg.ground_weight > 0:
        size = 0 if data.env_states is None else int(data.env_states.shape[1])
        if size < GOAL_STATE_DIM:
            raise ValueError(f"ground_weight > 0 needs demonstrations whose goal state "
                             f"(observation.environment_state) holds the image-plane labels "
                             f"({GOAL_STATE_DIM} values); this dataset has {size} - recollect "
                             "it with `vla-sim collect`")
        pcfg.grounding = True
    data.check_fits(pcfg)
    if scene_frames is not None:
        scene_frames = _check_scene_frames(scene_frames, data, cfg)
    threads_before = torch.get_num_threads()
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    try:
        with distributed.session(cfg.device) as dist:
            device = dist.device(resolve_device(cfg.device))
            if cfg.precision == "bf16" and device.type != "cuda":
                raise ValueError(f"precision=bf16 needs a CUDA device (device is {device}): on "
                                 "the CPU bf16 autocast measured no faster and stalled learning")
            return _train(data, out, cfg, resume, eval_fn, encoder, device, init_fn, dist,
                          scene_frames)
    finally:
        torch.set_num_threads(threads_before)


def _stackable(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether two observation batches concatenate along the batch (same keys and shapes)."""
    return a.keys() == b.keys() and all(a[k].shape[1:] == b[k].shape[1:] for k in a)


def _check_scene_frames(frames: DemoArrays, data: DemoArrays, cfg: BCConfig) -> DemoArrays:
    """Scene frames usable by the configured losses, with ``data``'s goal-state width (the
    layout's first values, when the demonstrations record fewer); else ValueError."""
    if cfg.scene_batch < 1:
        raise ValueError("scene frames given but scene_batch is 0: set scene_batch >= 1")
    if cfg.aux_weight <= 0 and cfg.ground_weight <= 0:
        raise ValueError("scene frames train only the goal-state and grounding losses: set "
                         "aux_weight > 0 or ground_weight > 0")
    size = 0 if frames.env_states is None else int(frames.env_states.shape[1])
    width = int(data.env_states.shape[1])
    if size < width:
        raise ValueError(f"scene frames hold {size} goal-state values per frame, the "
                         f"demonstrations {width}: render them with this version")
    if size > width:
        frames = dataclasses.replace(frames, env_states=frames.env_states[:, :width])
    frames.check_fits(cfg.policy)
    return frames


def autocast(cfg: BCConfig, device: torch.device) -> Any:
    """The context the loss runs in: bf16 autocast on CUDA with ``precision=bf16``."""
    if cfg.precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _train(data: DemoArrays, out: Path, cfg: BCConfig, resume: bool,
           eval_fn: Callable[[VLAPolicy], float] | None, encoder: Any,
           device: torch.device, init_fn: Callable[[VLAPolicy], Any] | None,
           dist: distributed.Distributed, scene_frames: DemoArrays | None = None) -> BCResult:
    pcfg = cfg.policy
    main = dist.is_main
    rows = dist.rows(cfg.batch_size) if dist.active else None  # this process's rows
    if encoder is None:
        from vla_sim.language.encoder import get_text_encoder

        encoder = get_text_encoder(pcfg.text_encoder)

    # Data: instruction features once per distinct instruction; split by whole episodes.
    instructions, alternatives = list(data.instructions), None
    if cfg.instruction_aug > 0:
        instructions, alternatives = instruction_alternatives(data, cfg.instruction_aug, cfg.seed)
    # Rank 0 first: it may add the strings to the dataset's feature cache the others read.
    text = dist.main_first(lambda: instruction_features(encoder, instructions, pcfg))
    batches = _Batches(data, text, pcfg, device, alternatives, cfg.instruction_aug_prob)
    scene = scene_rows = None
    if scene_frames is not None:
        scene_text = dist.main_first(
            lambda: instruction_features(encoder, list(scene_frames.instructions), pcfg))
        scene = _Batches(scene_frames, scene_text, pcfg, device)
        scene_rows = dist.rows(cfg.scene_batch, "scene_batch") if dist.active else None
    train_ids, val_ids = split_episodes(data.episode_index, cfg.val_fraction, cfg.seed)
    if len(val_ids) > cfg.val_max_samples:
        val_ids = np.sort(np.random.default_rng([cfg.seed, 8]).choice(
            val_ids, cfg.val_max_samples, replace=False))

    # Model, normalisation from the training split, optimiser, schedule.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        policy = VLAPolicy(pcfg)
    train_actions = data.actions[train_ids]
    policy.set_normalization(data.states[train_ids].mean(0), data.states[train_ids].std(0),
                             train_actions.mean(0), train_actions.std(0))
    if policy.aux_head is not None and data.env_states is not None:
        targets = data.env_states[train_ids, :pcfg.aux_dim]
        policy.set_aux_normalization(targets.mean(0), targets.std(0))
    if init_fn is not None and not resume:
        init_fn(policy)
    policy.to(device).train()
    optimizer = adamw(decay_groups(policy, cfg.weight_decay), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio))

    step, best, best_kind, losses = 0, None, "last", []
    last = out / "last"
    dist.main_only(lambda: prepare_run(out, "bc_config.json", config_to_dict(cfg), resume, "BC",
                                       last, RESUME_FREE_KEYS + RESUMABLE_CHANGES,
                                       defaults=config_defaults(cfg)))
    if resume:
        read_checkpoint_config(last)
        load_state_strict(policy, read_weights(last / "model.safetensors"), str(last))
        state = load_trainer_state(last)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best_kind = int(state["step"]), str(state["best_kind"])
        best = None if state["best_metric"] is None else float(state["best_metric"])
        losses = [float(x) for x in state["train_losses"]]
        if step >= cfg.steps:
            if main:
                log.info("%s: run already finished at step %d; nothing to do", out, step)
            return BCResult(out_dir=out, steps=step, train_losses=losses, val_loss=None,
                            best_metric=best, best_kind=best_kind, samples_per_s=0.0, wall_s=0.0)
        if main:
            log.info("resuming from %s at step %d/%d", last, step, cfg.steps)
    dist.broadcast_module(policy)  # every process starts from rank 0's weights

    meta_base = {"trainer": "bc", "num_steps_data": int(len(data.states)),
                 "num_episodes": int(len(np.unique(data.episode_index))),
                 "instructions": list(data.instructions)}
    logger = ScalarLogger(out / "tb" if cfg.tensorboard and main else None,
                          purge_step=step or None)

    def trainer_state() -> dict[str, Any]:
        return {"step": step, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "best_metric": best, "best_kind": best_kind,
                "train_losses": torch.tensor(losses, dtype=torch.float64)}

    def checkpoint() -> None:
        if main:  # the others wait at the next barrier or all-reduce
            path = save_training_checkpoint(out / "checkpoints" / f"step_{step:06d}", policy,
                                            trainer_state(), {**meta_base, "step": step})
            publish_checkpoint(path, out / "last")

    def evaluate(final: bool) -> float | None:
        """Val loss and (maybe) success; save ``best`` if improved. Returns the val loss."""
        nonlocal best, best_kind
        ground = policy.ground_head is not None and cfg.ground_weight > 0
        metrics = (validation_metrics(policy, batches, val_ids, 256, grounding=ground,
                                      seed=cfg.seed) if len(val_ids) else {})
        vloss = metrics.get("val/loss")
        if ground and metrics:
            log.info("step %d grounding (val): %s", step, ", ".join(
                f"{k.split('/')[-1]} {v:.2f}" for k, v in metrics.items() if k != "val/loss"))
        success = None
        every = cfg.eval_every_grad_steps
        if eval_fn is not None and (final or (every and step % every == 0)):
            policy.eval()
            success = float(eval_fn(policy))
            policy.train()
            metrics["eval/success_rate"] = success
        logger.scalars(metrics, step)
        if success is not None:
            improved = best_kind != "success" or best is None or success > best
            if improved:
                best, best_kind = success, "success"
        elif vloss is not None and best_kind != "success":
            improved = best is None or vloss < best
            if improved:
                best, best_kind = vloss, "val_loss"
        else:
            improved = best_kind == "last"
        if improved:
            from vla_sim.agents.policies.checkpoint import save_policy

            save_policy(policy, out / "best", meta={**meta_base, "step": step,
                                                    "best_kind": best_kind, "best_metric": best})
        return vloss

    stop_at = cfg.steps if not cfg.steps_this_run else min(cfg.steps, step + cfg.steps_this_run)
    progress = None
    if cfg.progress and main:
        from tqdm.auto import tqdm

        progress = tqdm(total=cfg.steps, initial=step, desc="bc", dynamic_ncols=True)

    sample = batch_sampler(batches, train_ids, cfg, rows, scene, scene_rows)
    loss = loss_function(policy, cfg, device, dist)

    def after_step(done: int, value: float, grad_norm: float) -> None:
        nonlocal step, vloss
        step = done
        losses.append(value)
        if step % cfg.log_every_grad_steps == 0 or step == stop_at:
            logger.scalars({"train/loss": value, "train/lr": scheduler.get_last_lr()[0],
                            "train/grad_norm": grad_norm}, step)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{value:.4f}")
        every = cfg.eval_every_grad_steps
        if step % cfg.val_every_grad_steps == 0 or (every and step % every == 0):
            if step < cfg.steps:
                if main:  # validation and in-sim checks on rank 0; the others wait
                    vloss = evaluate(final=False)
                dist.barrier()
        if step % cfg.checkpoint_every_grad_steps == 0 and step < stop_at:
            checkpoint()
            dist.barrier()

    loop = SupervisedLoop(list(policy.parameters()), optimizer, sample, loss, cfg.seed,
                          scheduler, cfg.grad_clip, [after_step], dist=dist)
    t0, start_step, vloss = time.perf_counter(), step, None
    try:
        loop.run(step, stop_at)
        if step >= cfg.steps and main:
            vloss = evaluate(final=True)
        checkpoint()
        dist.barrier()
    except KeyboardInterrupt:
        if not loop.in_update:  # keep the work done so far; ``--resume`` continues from here
            checkpoint()
            if main:
                log.warning("interrupted at step %d: checkpoint saved to %s; re-run with "
                            "--resume to continue", step, out / "last")
        elif main:
            log.warning("interrupted inside an update at step %d: nothing new was saved", step)
        raise
    finally:
        if progress is not None:
            progress.close()
        logger.close()
    wall = time.perf_counter() - t0
    done = step - start_step
    return BCResult(out_dir=out, steps=step, train_losses=losses, val_loss=vloss,
                    best_metric=best, best_kind=best_kind,
                    samples_per_s=done * cfg.batch_size / wall if wall > 0 else 0.0, wall_s=wall)


def bc_config_from_dict(data: dict) -> BCConfig:
    """Rebuild a :class:`BCConfig` (unknown keys -> ConfigError)."""
    return config_from_dict(BCConfig, data)


__all__ = ["BCConfig", "BCResult", "DemoArrays", "augment", "augment_with_shift",
           "bc_config_from_dict", "grounding_targets", "split_episodes", "train_bc"]
