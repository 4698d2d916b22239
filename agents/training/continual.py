"""Continual learning: fine-tune a trained policy on a new task while replaying earlier tasks.

- :class:`ReservoirReplayBuffer` keeps a uniform sample of everything it has seen (Vitter's
  Algorithm R): after ``n`` items each one is held with probability ``min(1, capacity / n)``,
  whatever the order or the length of the stream, in ``capacity`` memory.
- :func:`finetune_with_replay`: each batch has ``round(replay_ratio * B)`` samples from the
  buffer (earlier tasks' steps) and the rest from the new task; the peak LR is
  ``lr_scale * bc.lr`` (a lower LR moves the shared weights less). Normalisation statistics
  are re-fitted on old + new data by a function-preserving re-parameterisation
  (:func:`renormalize_policy`), so the fine-tuning loss is well scaled and nothing is forgotten
  by the change itself.
- :func:`forgetting_report`: success per task before vs after; forgetting = before - after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from vla_sim.agents.policies.vla import ACTION_STD_FLOOR, STATE_STD_FLOOR, VLAPolicy  # noqa: F401
from vla_sim.data.demos import DemoArrays, concat_demos

from .bc import BCConfig, _Batches, instruction_features
from .common import resolve_device
from .configs import ContinualConfig
from .loop import train_steps


class ReservoirReplayBuffer:
    """Fixed-size uniform sample of a stream (reservoir sampling, Algorithm R).

    Args:
        capacity: items kept at most.
        seed: seeds the buffer's own generator (which items are kept).
    """

    def __init__(self, capacity: int, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.items: list[Any] = []
        self.seen = 0
        self._rng = np.random.default_rng([int(seed), 0x5E5E])

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: Any) -> None:
        """Offer one item: the ``n``-th item replaces a random slot with probability ``k/n``."""
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(item)
            return
        j = int(self._rng.integers(0, self.seen))  # uniform in 0..n-1
        if j < self.capacity:
            self.items[j] = item

    def extend(self, items: Iterable[Any]) -> None:
        for item in items:
            self.add(item)

    def sample(self, n: int, rng: np.random.Generator | None = None) -> list[Any]:
        """``n`` stored items drawn uniformly with replacement."""
        if not self.items:
            raise ValueError("cannot sample from an empty replay buffer")
        rng = rng if rng is not None else self._rng
        return [self.items[i] for i in rng.integers(0, len(self.items), n)]


@torch.no_grad()
def renormalize_policy(policy: VLAPolicy, state_mean, state_std, action_mean, action_std) -> None:
    """Change the policy's normalisation statistics without changing what it computes.

    A policy trained on one task may have a near-constant dimension there (the gripper in Reach:
    std floored at 1e-3), so another task's targets would be thousands of "stds" away and its
    loss would explode. The state MLP's first layer and the Gaussian head's linear layer are
    re-parameterised so every output stays identical under the new statistics:
    ``W' = W * sd'/sd`` (columns), ``b' = b + W (m' - m)/sd`` for the state input, and
    ``W' = W * sd/sd'`` (rows), ``b' = (b * sd + m - m')/sd'`` for the action output.
    """
    from vla_sim.agents.policies.vla import FlowHead, GaussianHead

    if isinstance(getattr(policy, "action_head", None), FlowHead):
        # Its normalised noise would change meaning with the statistics: no exact rewrite.
        raise ValueError("continual learning needs policy.head='gaussian' or 'discrete': a "
                         "flow head cannot be re-normalised without changing its actions")

    def t(x):
        return torch.as_tensor(np.asarray(x, np.float32))

    ext = policy.extractor
    new_m, new_s = t(state_mean), t(state_std).clamp(min=STATE_STD_FLOOR)
    first = ext.state_mlp[0]
    old_m, old_s = ext.state_mean.clone(), ext.state_std.clone()
    first.bias.add_(first.weight @ ((new_m - old_m) / old_s))
    first.weight.mul_((new_s / old_s)[None, :])
    ext.state_mean.copy_(new_m)
    ext.state_std.copy_(new_s)
    heads = getattr(policy, "task_heads", None) or [policy.action_head]
    for head in heads:
        if not isinstance(head, GaussianHead):
            continue  # discrete heads have no action normalisation
        am, asd = t(action_mean), t(action_std).clamp(min=ACTION_STD_FLOOR)
        ratio = head.action_std / asd
        k = head.chunk  # the output rows hold `chunk` actions, each normalised the same way
        head.mean.bias.copy_((head.mean.bias * head.action_std.repeat(k)
                              + head.action_mean.repeat(k) - am.repeat(k)) / asd.repeat(k))
        head.mean.weight.mul_(ratio.repeat(k)[:, None])
        head.log_std.add_(torch.log(ratio))  # same std in env units
        head.action_mean.copy_(am)
        head.action_std.copy_(asd)


@dataclass
class ContinualResult:
    policy: VLAPolicy
    train_losses: list[float]
    buffer: ReservoirReplayBuffer | None
    replay_per_batch: int


def finetune_with_replay(policy: VLAPolicy, new: DemoArrays, old: Sequence[DemoArrays] = (),
                         config: ContinualConfig | None = None, encoder: Any = None
                         ) -> ContinualResult:
    """Fine-tune ``policy`` (in place) on ``new`` with reservoir replay of ``old`` datasets.

    The buffer is filled by streaming the old datasets' steps in a seeded shuffled order, as a
    continual learner would meet them. With ``replay_ratio == 0`` or no ``old`` data this is
    plain fine-tuning at the lower LR.
    """
    cfg = config or ContinualConfig()
    bc = cfg.bc
    new.check_fits(policy.config)
    device = resolve_device(bc.device)
    if encoder is None:
        from vla_sim.language.encoder import get_text_encoder

        encoder = get_text_encoder(policy.config.text_encoder)
    merged, (new_ids, *old_ids) = concat_demos([new, *old])
    text = instruction_features(encoder, merged.instructions, policy.config)
    batches = _Batches(merged, text, policy.config, device)

    if cfg.renormalize:
        pool = np.concatenate([new_ids, *old_ids])
        renormalize_policy(policy, merged.states[pool].mean(0), merged.states[pool].std(0),
                           merged.actions[pool].mean(0), merged.actions[pool].std(0))
    buffer = None
    n_replay = 0
    if old and cfg.replay_ratio > 0:
        buffer = ReservoirReplayBuffer(cfg.replay_size, seed=cfg.seed)
        stream = np.concatenate(old_ids)
        buffer.extend(np.random.default_rng([cfg.seed, 1]).permutation(stream).tolist())
        n_replay = int(round(cfg.replay_ratio * bc.batch_size))
    n_new = bc.batch_size - n_replay

    def sample(rng: np.random.Generator):
        ids = new_ids[rng.integers(0, len(new_ids), n_new)]
        if n_replay:
            ids = np.concatenate([ids, np.asarray(buffer.sample(n_replay, rng), np.int64)])
        obs, actions = batches.get(ids, rng, bc.shift_pad, bc.color_jitter)
        return obs, actions, {}

    run_cfg = BCConfig(**{**bc.__dict__, "seed": cfg.seed})
    policy.to(device)
    losses = train_steps(policy, sample, lambda p, b: p.bc_loss(b[0], b[1]), run_cfg,
                         steps=cfg.steps, lr=cfg.lr_scale * bc.lr)
    return ContinualResult(policy, losses, buffer, n_replay)


def forgetting_report(before: Mapping[str, float], after: Mapping[str, float],
                      new_task: str | None = None) -> dict[str, dict[str, float]]:
    """Per task: success before, after, and forgetting = before - after (old tasks) or gain =
    after - before (the new task)."""
    out = {}
    for task in sorted(set(before) | set(after)):
        b, a = before.get(task), after.get(task)
        row = {"before": b, "after": a}
        if b is not None and a is not None:
            row["gain" if task == new_task else "forgetting"] = (a - b) if task == new_task else (b - a)
        out[task] = row
    return out


def format_forgetting_report(report: Mapping[str, Mapping[str, float]]) -> str:
    width = max([16] + [len(t) + 2 for t in report])
    lines = [f"{'task':<{width}}{'before':>8}{'after':>8}  change"]
    for task, row in report.items():
        kind = "gain" if "gain" in row else "forgetting"
        value = row.get(kind)

        def fmt(x):
            return "   n/a" if x is None else f"{x:6.2f}"
        lines.append(f"{task:<{width}}{fmt(row['before']):>8}{fmt(row['after']):>8}  "
                     f"{'' if value is None else f'{kind} {value:+.2f}'}")
    return "\n".join(lines)


__all__ = ["ContinualConfig", "ContinualResult", "ReservoirReplayBuffer", "concat_demos",
           "finetune_with_replay", "forgetting_report", "format_forgetting_report",
           "renormalize_policy"]
