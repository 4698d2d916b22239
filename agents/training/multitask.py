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

from vla_sim.agents.policies.vla import ACTION_STD_FLOOR, STATE_STD_FLOOR  # noqa: F401

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from vla_sim.agents.policies.checkpoint import load_state_strict, read_checkpoint_config, save_policy
from vla_sim.agents.policies.config import VLAPolicyConfig
from vla_sim.agents.policies.vla import GaussianHead, VLAPolicy
from vla_sim.config import config_from_dict

from .bc import BCConfig, DemoArrays, _Batches, _param_groups, instruction_features, split_episodes
from .common import cosine_with_warmup, resolve_device

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
        from .continual import concat_demos

        demos, _ = concat_demos([p.demos for p in parts])
        tasks = sorted({t for p in parts for t in p.task_names})
        index = np.concatenate([np.array([tasks.index(p.task_names[i]) for i in p.task_index],
                                         np.int64) for p in parts])
        return cls(demos, tasks, index)


# ------------------------------------------------------------------------------------- policy
class MultiHeadVLAPolicy(VLAPolicy):
    """:class:`VLAPolicy` whose action head is chosen per sample by task (Gaussian heads).

    Args:
        config: the architecture (``head`` must be ``gaussian``).
        tasks: task names, in task-id order.
    """

    def __init__(self, config: VLAPolicyConfig | None = None, tasks: Sequence[str] = ("task",)):
        super().__init__(config)
        if self.config.head != "gaussian":
            raise ValueError(f"per-task heads support head='gaussian' only, got {self.config.head!r}")
        if not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be a non-empty list without repeats, got {list(tasks)}")
        self.tasks = list(tasks)
        f = self.extractor.features_dim
        del self.action_head  # replaced by one head per task
        self.task_heads = nn.ModuleList([GaussianHead(f, self.config) for _ in self.tasks])
        self.task_classifier = nn.Linear(self.config.text_dim, len(self.tasks))
        self.forced_task: int | None = None

    # --- routing ------------------------------------------------------------------------------
    def set_task(self, task: str | int | None) -> None:
        """Force every following ``act`` onto one task's head (None: use the classifier)."""
        if task is None or isinstance(task, int):
            self.forced_task = task
        elif task in self.tasks:
            self.forced_task = self.tasks.index(task)
        else:
            raise ValueError(f"unknown task {task!r}; policy tasks: {self.tasks}")

    def task_ids(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B,) task ids: ``obs["task_id"]``, else the forced task, else the classifier's."""
        if "task_id" in obs:
            return torch.as_tensor(obs["task_id"]).long().reshape(-1)
        b = obs["state"].shape[0]
        if self.forced_task is not None:
            return torch.full((b,), self.forced_task, dtype=torch.long, device=obs["state"].device)
        return self.task_classifier(obs["instruction_embedding"].float()).argmax(-1)

    def _route(self, features: torch.Tensor, task_ids: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalised mean (B,A), env-unit mean (B,A), env-unit std (B,A)), each row from its
        task's head."""
        b, a = features.shape[0], self.config.action_dim
        norm_mean = features.new_zeros(b, a)
        mean = features.new_zeros(b, a)
        std = features.new_zeros(b, a)
        for t, head in enumerate(self.task_heads):
            rows = task_ids == t
            if not bool(rows.any()):
                continue
            nm = head.normalized_mean(features[rows])
            norm_mean[rows] = nm
            mean[rows] = nm * head.action_std + head.action_mean
            std[rows] = (head.log_std.exp() * head.action_std).expand(int(rows.sum()), -1)
        return norm_mean, mean, std

    # --- VLAPolicy API --------------------------------------------------------------------------
    def set_normalization(self, state_mean, state_std, action_mean=None, action_std=None) -> None:
        def t(x):
            return torch.as_tensor(np.asarray(x, np.float32))

        self.extractor.state_mean.copy_(t(state_mean))
        self.extractor.state_std.copy_(t(state_std).clamp(min=STATE_STD_FLOOR))
        if action_mean is not None:
            for head in self.task_heads:
                head.action_mean.copy_(t(action_mean))
                head.action_std.copy_(t(action_std).clamp(min=ACTION_STD_FLOOR))

    def normalization(self) -> dict[str, list[float]]:
        head = self.task_heads[0]
        return {"state_mean": self.extractor.state_mean.tolist(),
                "state_std": self.extractor.state_std.tolist(),
                "action_mean": head.action_mean.tolist(), "action_std": head.action_std.tolist()}

    def forward(self, obs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.extractor(obs)
        value = self.value_head(features).squeeze(-1) if self.value_head is not None else None
        return self._route(features, self.task_ids(obs))[1], value

    def distribution(self, obs: Mapping[str, torch.Tensor]):
        from vla_sim.agents.policies.vla import GaussianDistribution

        _, mean, std = self._route(self.extractor(obs), self.task_ids(obs))
        return GaussianDistribution(mean, std)

    def evaluate_actions(self, obs, actions):
        features = self.extractor(obs)
        from vla_sim.agents.policies.vla import GaussianDistribution

        _, mean, std = self._route(features, self.task_ids(obs))
        dist = GaussianDistribution(mean, std)
        value = self.value_head(features).squeeze(-1) if self.value_head is not None else None
        return dist.log_prob(actions), dist.entropy(), value

    def per_sample_loss(self, obs: Mapping[str, torch.Tensor], actions: torch.Tensor
                        ) -> torch.Tensor:
        """(B,) MSE in normalised action units, each sample through its task's head."""
        task_ids = self.task_ids(obs)
        norm_mean, _, _ = self._route(self.extractor(obs), task_ids)
        means = torch.stack([h.action_mean for h in self.task_heads])[task_ids]
        stds = torch.stack([h.action_std for h in self.task_heads])[task_ids]
        return ((norm_mean - (actions - means) / stds) ** 2).mean(-1)

    def bc_loss(self, obs: Mapping[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        return self.per_sample_loss(obs, actions).mean()


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
def train_steps(policy: nn.Module, sample_batch: Callable[[np.random.Generator], Batch],
                loss_fn: Callable[[nn.Module, Batch], torch.Tensor], cfg: BCConfig,
                steps: int | None = None, lr: float | None = None,
                log: Callable[[int, float], None] | None = None) -> list[float]:
    """AdamW + warm-up/cosine + grad clipping for ``steps`` (default ``cfg.steps``) steps at
    peak ``lr`` (default ``cfg.lr``). Batch ``t`` comes from a generator seeded ``(seed, t)``.
    Returns the training losses."""
    steps = cfg.steps if steps is None else int(steps)
    lr = cfg.lr if lr is None else float(lr)
    policy.train()
    optimizer = torch.optim.AdamW(_param_groups(policy, cfg.weight_decay), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(min(cfg.warmup_steps, steps // 4), steps, cfg.min_lr_ratio))
    losses = []
    for step in range(steps):
        batch = sample_batch(np.random.default_rng([cfg.seed, step]))
        loss = loss_fn(policy, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(),
                                       cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if log is not None:
            log(step + 1, losses[-1])
    policy.eval()
    return losses


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
        out_dir: if given, the policy is saved there (:func:`save_multitask_policy`).
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
        save_multitask_policy(policy, out_dir, meta={"val_loss_per_task": val_loss})
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
def save_multitask_policy(policy: VLAPolicy, directory: str | Path,
                          meta: dict[str, Any] | None = None) -> Path:
    """Save like :func:`save_policy`; a per-task policy records its tasks under
    ``meta.multitask`` (load it with :func:`load_multitask_policy`)."""
    meta = dict(meta or {})
    if isinstance(policy, MultiHeadVLAPolicy):
        meta["multitask"] = {"heads": "per-task", "tasks": policy.tasks}
    return save_policy(policy, directory, meta=meta)


def load_multitask_policy(directory: str | Path, device: str = "cpu") -> VLAPolicy:
    """Rebuild a shared-head or per-task-head policy from a checkpoint folder, in eval mode."""
    from safetensors.torch import load_file

    from vla_sim.agents.policies.checkpoint import load_policy

    directory = Path(directory)
    data = read_checkpoint_config(directory)
    info = data.get("meta", {}).get("multitask")
    if not info:
        return load_policy(directory, device)
    policy = MultiHeadVLAPolicy(config_from_dict(VLAPolicyConfig, data["policy"]), info["tasks"])
    load_state_strict(policy, load_file(str(directory / "model.safetensors")), str(directory))
    return policy.to(device).eval()


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
           "MultiTaskResult", "TaskBatches", "build_multitask_policy", "fit_task_classifier", "load_multitask_policy",
           "per_sample_bc_loss", "read_task_weights", "save_multitask_policy",
           "task_weighted_loss", "train_multitask", "train_steps"]
