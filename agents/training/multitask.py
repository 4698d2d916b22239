"""Multi-task behaviour cloning: one shared encoder with per-task action heads, or one shared head,
and task-weighted losses.

    per-task heads:  features = extractor(obs)          (shared vision + language + state trunk)
                     action   = head[task(obs)](features)
    shared head:     the plain :class:`VLAPolicy` (one head for every task)

Routing: a batch carries ``task_id`` (long, (B,)) during training. At inference, raw env
observations carry no task id, so a linear task classifier on the frozen instruction embedding
(fitted on the training instructions before BC, then trained jointly) picks the head;
``obs["task_id"]`` or :meth:`set_task` (the task id is known) overrides it.

Loss: ``sum_i w[task_i] * l_i / B`` where ``l_i`` is the per-sample BC loss (MSE in normalised
action units), so a task weight of 2 doubles that task's gradient and 0 removes it.

This module also holds :func:`train_steps`, the small supervised loop (AdamW, warm-up + cosine,
clipping, per-step seeded batches) that multi-task and continual training share. It reuses the BC
trainer's batching and augmentation (:mod:`vla_sim.agents.training.bc`); only the loss and the
batch sampler differ, which ``train_bc`` has no hooks for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from vla_sim.agents.policies.checkpoint import save_policy
from vla_sim.agents.policies.multihead import MultiHeadVLAPolicy
from vla_sim.agents.policies.vla import GaussianHead, VLAPolicy
from vla_sim.data.demos import DemoArrays, concat_demos, split_episodes

from .bc import BCConfig, _Batches, instruction_features
from .common import resolve_device
from .loop import train_steps

HEAD_MODES = ("shared", "per-task")

Batch = tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]


# ------------------------------------------------------------------------------------- config
@dataclass
class MultiTaskConfig:
    """Multi-task BC: head layout and per-task loss weights on top of a :class:`BCConfig`."""

    heads: str = "per-task"
    """``per-task``: shared encoder + one action head per task; ``shared``: one head for all."""
    task_weights: dict[str, float] = field(default_factory=dict)
    """Task name -> loss weight; tasks not named get 1.0."""
    classifier_weight: float = 1.0
    """Weight of the task-classifier cross-entropy (per-task heads only; the classifier reads
    the frozen instruction embedding, so it shares no parameters with the policy)."""
    bc: BCConfig = field(default_factory=BCConfig)
    """Optimisation, augmentation and policy architecture (``bc.policy``)."""

    def __post_init__(self) -> None:
        if isinstance(self.bc, dict):
            self.bc = BCConfig(**self.bc)
        if self.heads not in HEAD_MODES:
            raise ValueError(f"heads must be one of {HEAD_MODES}, got {self.heads!r}")
        bad = {k: v for k, v in self.task_weights.items() if v < 0}
        if bad:
            raise ValueError(f"task weights must be >= 0, got {bad}")
        if self.classifier_weight < 0:
            raise ValueError(f"classifier_weight must be >= 0, got {self.classifier_weight}")

    def weight_vector(self, tasks: Sequence[str]) -> torch.Tensor:
        unknown = sorted(set(self.task_weights) - set(tasks))
        if unknown:
            raise ValueError(f"task_weights name tasks {unknown} that the data does not have "
                             f"(tasks: {list(tasks)})")
        return torch.tensor([float(self.task_weights.get(t, 1.0)) for t in tasks])


@dataclass
class MultiTaskData:
    """Demonstrations with a task label per step: ``task_index`` (N,) into ``task_names``."""

    demos: DemoArrays
    task_names: list[str]
    task_index: np.ndarray

    def __post_init__(self) -> None:
        self.task_index = np.asarray(self.task_index, np.int64)
        if len(self.task_index) != len(self.demos.states):
            raise ValueError(f"task_index has {len(self.task_index)} entries for "
                             f"{len(self.demos.states)} steps")
        if len(self.task_index) and (self.task_index.min() < 0
                                     or self.task_index.max() >= len(self.task_names)):
            raise ValueError(f"task_index out of range 0..{len(self.task_names) - 1}")

    @classmethod
    def from_dataset(cls, dataset: Any) -> "MultiTaskData":
        """From a :class:`vla_sim.data.VLADataset`; the task of each episode comes from its
        record (``vla_sim/task``, written by ``vla-sim collect``)."""
        demos = DemoArrays.from_dataset(dataset)
        names = {}
        for ep in np.unique(demos.episode_index):
            task = dataset.reader.episode_record(int(ep)).get("task")
            if not task:
                raise ValueError(f"episode {ep} of {dataset.root} has no task name; multi-task "
                                 "training needs datasets written by vla-sim collect")
            names[int(ep)] = str(task)
        tasks = sorted(set(names.values()))
        lookup = {t: i for i, t in enumerate(tasks)}
        return cls(demos, tasks, np.array([lookup[names[int(e)]] for e in demos.episode_index]))

    @classmethod
    def concat(cls, parts: Sequence["MultiTaskData"]) -> "MultiTaskData":
        """Several datasets (e.g. one per task) as one; task names are merged by name."""

        demos, _ = concat_demos([p.demos for p in parts])
        tasks = sorted({t for p in parts for t in p.task_names})
        index = np.concatenate([np.array([tasks.index(p.task_names[i]) for i in p.task_index],
                                         np.int64) for p in parts])
        return cls(demos, tasks, index)


def per_sample_bc_loss(policy: VLAPolicy, obs: Mapping[str, torch.Tensor], actions: torch.Tensor
                       ) -> torch.Tensor:
    """(B,) behaviour-cloning loss per sample for a shared-head or a per-task-head policy."""
    if isinstance(policy, MultiHeadVLAPolicy):
        return policy.per_sample_loss(obs, actions)
    head = policy.action_head
    if not isinstance(head, GaussianHead):
        raise ValueError("task-weighted losses need a gaussian head")
    target = (actions - head.action_mean) / head.action_std
    return ((head.normalized_mean(policy.extractor(obs)) - target) ** 2).mean(-1)


def task_weighted_loss(per_sample: torch.Tensor, task_ids: torch.Tensor, weights: torch.Tensor
                       ) -> torch.Tensor:
    """``sum_i weights[task_i] * per_sample[i] / B``."""
    return (weights.to(per_sample.device)[task_ids] * per_sample).mean()


# --------------------------------------------------------------------------- supervised loop
class TaskBatches:
    """Seeded, augmented batches of policy tensors with ``extra["task_id"]`` for a set of ids."""

    def __init__(self, data: MultiTaskData, cfg: BCConfig, encoder: Any, device: torch.device):
        text = instruction_features(encoder, data.demos.instructions, cfg.policy)
        self.batches = _Batches(data.demos, text, cfg.policy, device)
        self.task_index = torch.from_numpy(data.task_index)
        self.cfg, self.device = cfg, device

    def get(self, ids: np.ndarray, rng: np.random.Generator | None) -> Batch:
        obs, actions = (self.batches.get(ids, rng, self.cfg.shift_pad, self.cfg.color_jitter)
                        if rng is not None else self.batches.get(ids))
        task = self.task_index[torch.from_numpy(np.asarray(ids))].to(self.device)
        return obs, actions, {"task_id": task}

    def sampler(self, ids: np.ndarray) -> Callable[[np.random.Generator], Batch]:
        def sample(rng: np.random.Generator) -> Batch:
            return self.get(ids[rng.integers(0, len(ids), self.cfg.batch_size)], rng)
        return sample


def build_multitask_policy(cfg: MultiTaskConfig, tasks: Sequence[str]) -> VLAPolicy:
    """A seeded fresh policy: :class:`MultiHeadVLAPolicy` or a plain :class:`VLAPolicy`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.bc.seed)
        if cfg.heads == "per-task":
            return MultiHeadVLAPolicy(cfg.bc.policy, tasks)
        return VLAPolicy(cfg.bc.policy)


@dataclass
class MultiTaskResult:
    policy: VLAPolicy
    train_losses: list[float]
    val_loss_per_task: dict[str, float]
    classifier_accuracy: float | None


def train_multitask(data: MultiTaskData, config: MultiTaskConfig | None = None,
                    encoder: Any = None, out_dir: str | Path | None = None) -> MultiTaskResult:
    """Train shared-head or per-task-head BC on multi-task demonstrations with task weights.

    Args:
        data: demonstrations with task labels.
        encoder: text encoder (``features(list[str], max_tokens)``); default the shared one.
        out_dir: if given, the policy is saved there (``load_policy`` reloads either kind).
    """
    cfg = config or MultiTaskConfig()
    bc = cfg.bc
    data.demos.check_fits(bc.policy)
    device = resolve_device(bc.device)
    if encoder is None:
        from vla_sim.language.encoder import get_text_encoder

        encoder = get_text_encoder(bc.policy.text_encoder)
    weights = cfg.weight_vector(data.task_names)
    batches = TaskBatches(data, bc, encoder, device)
    train_ids, val_ids = split_episodes(data.demos.episode_index, bc.val_fraction, bc.seed)
    policy = build_multitask_policy(cfg, data.task_names)
    acts = data.demos.actions[train_ids]
    policy.set_normalization(data.demos.states[train_ids].mean(0), data.demos.states[train_ids].std(0),
                             acts.mean(0), acts.std(0))
    policy.to(device)
    if isinstance(policy, MultiHeadVLAPolicy):
        fit_task_classifier(policy, batches.batches.text["instruction_embedding"],
                            data.demos.instruction_index[train_ids], data.task_index[train_ids])

    def loss_fn(p: nn.Module, batch: Batch) -> torch.Tensor:
        obs, actions, extra = batch
        routed = {**obs, "task_id": extra["task_id"]}
        loss = task_weighted_loss(per_sample_bc_loss(p, routed, actions), extra["task_id"], weights)
        if isinstance(p, MultiHeadVLAPolicy) and cfg.classifier_weight > 0:
            logits = p.task_classifier(obs["instruction_embedding"].float())
            loss = loss + cfg.classifier_weight * nn.functional.cross_entropy(logits, extra["task_id"])
        return loss

    losses = train_steps(policy, batches.sampler(train_ids), loss_fn, bc)
    val_loss, accuracy = _validate(policy, batches, val_ids, data.task_names)
    if out_dir is not None:
        save_policy(policy, out_dir, meta={"val_loss_per_task": val_loss})
    return MultiTaskResult(policy, losses, val_loss, accuracy)


def fit_task_classifier(policy: MultiHeadVLAPolicy, embeddings: torch.Tensor,
                        instruction_index: np.ndarray, task_index: np.ndarray,
                        steps: int = 300, lr: float = 0.05) -> float:
    """Fit the routing classifier (logistic regression on the frozen instruction embeddings)
    on the distinct (instruction, task) pairs of the training steps, full batch. Joint training
    at the BC learning rate is too slow for it: it routed 29% of held-out instructions to the
    wrong head in our small benchmark. Returns the training accuracy."""
    pairs = np.unique(np.stack([instruction_index, task_index], 1), axis=0)
    x = embeddings[torch.from_numpy(pairs[:, 0])].float().to(policy.task_classifier.weight.device)
    y = torch.from_numpy(pairs[:, 1]).to(x.device)
    opt = torch.optim.Adam(policy.task_classifier.parameters(), lr=lr)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(policy.task_classifier(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((policy.task_classifier(x).argmax(-1) == y).float().mean())


@torch.no_grad()
def _validate(policy: VLAPolicy, batches: TaskBatches, ids: np.ndarray, tasks: Sequence[str]
              ) -> tuple[dict[str, float], float | None]:
    if len(ids) == 0:
        return {}, None
    sums, counts, correct = np.zeros(len(tasks)), np.zeros(len(tasks)), 0
    for start in range(0, len(ids), 256):
        obs, actions, extra = batches.get(ids[start:start + 256], None)
        tid = extra["task_id"]
        per = per_sample_bc_loss(policy, {**obs, "task_id": tid}, actions)
        np.add.at(sums, tid.cpu().numpy(), per.cpu().numpy())
        np.add.at(counts, tid.cpu().numpy(), 1)
        if isinstance(policy, MultiHeadVLAPolicy):
            correct += int((policy.task_ids(obs) == tid).sum())
    per_task = {t: float(sums[i] / counts[i]) for i, t in enumerate(tasks) if counts[i]}
    acc = correct / len(ids) if isinstance(policy, MultiHeadVLAPolicy) else None
    return per_task, acc


# -------------------------------------------------------------------------------- checkpoints
def read_task_weights(text: str | None) -> dict[str, float]:
    """``"reach=1,push=2"`` or a JSON object -> {task: weight}."""
    if not text:
        return {}
    text = text.strip()
    if text.startswith("{"):
        return {str(k): float(v) for k, v in json.loads(text).items()}
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise ValueError(f"task weight {part!r} is not name=value (e.g. reach=1,push=2)")
        name, value = part.split("=", 1)
        out[name.strip()] = float(value)
    return out


__all__ = ["HEAD_MODES", "MultiHeadVLAPolicy", "MultiTaskConfig", "MultiTaskData",
           "MultiTaskResult", "TaskBatches", "build_multitask_policy", "fit_task_classifier",
           "per_sample_bc_loss", "read_task_weights",
           "task_weighted_loss", "train_multitask", "train_steps"]
