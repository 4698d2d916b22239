"""A VLA policy with one action head per task, routed by task id or by an instruction classifier.

    features = extractor(obs)          (shared vision + language + state trunk)
    action   = head[task(obs)](features)

Routing: a batch carries ``task_id`` (long, (B,)) during training. At inference, raw env
observations carry no task id, so a linear task classifier on the frozen instruction embedding
picks the head; ``obs["task_id"]`` or :meth:`MultiHeadVLAPolicy.set_task` overrides it.
Trained by ``vla_sim.agents.training.multitask``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .config import VLAPolicyConfig
from .vla import (
    ACTION_STD_FLOOR,
    STATE_STD_FLOOR,
    GaussianDistribution,
    GaussianHead,
    VLAPolicy,
)


class MultiHeadVLAPolicy(VLAPolicy):
    """:class:`VLAPolicy` whose action head is chosen per sample by task (Gaussian heads).

    Args:
        config: the architecture (``head`` must be ``gaussian``).
        tasks: task names, in task-id order.
    """

    policy_type = "vla_multihead"

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

    def init_kwargs(self) -> dict[str, Any]:
        """What the constructor needs besides the config (saved in config.json)."""
        return {"tasks": list(self.tasks)}

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
        _, mean, std = self._route(self.extractor(obs), self.task_ids(obs))
        return GaussianDistribution(mean, std)

    def evaluate_actions(self, obs, actions):
        features = self.extractor(obs)
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
