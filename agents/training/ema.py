"""An exponential moving average of a policy's weights, the policy that BC saves when enabled.

Why: late in a short BC run the weights still jitter from batch to batch, and a policy acting in
closed loop feels every jitter; averaging the last few hundred steps' weights (Polyak averaging,
as Diffusion Policy and LeRobot's diffusion policy do) gives a smoother policy for free. Built
on torch's :class:`~torch.optim.swa_utils.AveragedModel`; the decay ramps up as
``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the random initial weights do not
linger in the average of a run only a few thousand steps long.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_decay_at(decay: float, updates: int) -> float:
    """The decay used for the update after ``updates`` earlier ones (warm-up ramp)."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightEMA:
    """The averaged copy of ``module``; call :meth:`update` after every optimiser step.

    Buffers (normalisation statistics, bin centres) are copied, not averaged."""

    def __init__(self, module: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.averaged = AveragedModel(module, multi_avg_fn=self._lerp, use_buffers=False)

    @torch.no_grad()
    def _lerp(self, averaged: list[torch.Tensor], current: list[torch.Tensor],
              n_averaged: torch.Tensor) -> None:
        # AveragedModel copies the weights on the first update (n = 0) and counts from there.
        weight = 1.0 - ema_decay_at(self.decay, int(n_averaged) - 1)
        torch._foreach_lerp_(averaged, current, weight)

    @property
    def module(self) -> Any:
        """The averaged model (same class as the tracked one)."""
        return self.averaged.module

    @property
    def updates(self) -> int:
        return int(self.averaged.n_averaged)

    def update(self, module: nn.Module) -> None:
        self.averaged.update_parameters(module)

    def restore(self, weights: dict[str, torch.Tensor], updates: int) -> None:
        """Resume: the averaged weights and the number of updates behind them."""
        self.module.load_state_dict(weights, strict=True)
        self.averaged.n_averaged.fill_(int(updates))


__all__ = ["WeightEMA", "ema_decay_at"]
