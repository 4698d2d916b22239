"""The one supervised gradient loop: BC, DAgger, multi-task, continual, curriculum and both
pre-trainings run their updates through :class:`SupervisedLoop`.

What differs between trainers is passed in as hooks: how a batch is drawn (``sample``), what the
loss is (``loss``), and what happens after a step (``callbacks``: logging, validation,
evaluation, checkpoints). What must not differ lives here: batch ``t`` is drawn from a generator
seeded ``(seed, t)`` (so a resumed run reproduces an uninterrupted one exactly), gradients are
clipped, the optimiser and the schedule step once per batch, and ``in_update`` says whether an
interrupt landed between updates (weights and step agree) or inside one. A NaN or infinite
loss or gradient stops training with :class:`NonFiniteError` before the optimiser step.

Under ``torchrun`` (``dist``, :mod:`.distributed`) the gradients are averaged over processes
before clipping, so the clipped norm, the loss checks and the stop on a signal are the same
decision on every process.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from vla_sim.agents.policies.vla import fused


class NonFiniteError(ValueError):
    """A loss or gradient became NaN or infinite: training stops before the weights are
    written over (the last checkpoint stays the last good one)."""


Callback = Callable[[int, float, float], None]
"""``callback(step, loss, grad_norm)`` after each update; ``step`` counts finished updates."""


def cosine_with_warmup(warmup_steps: int, total_steps: int, min_ratio: float = 0.0
                       ) -> Callable[[int], float]:
    """LR factor: linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on matrices and kernels only (not on biases,
    norms, log-stds or learned attention queries)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "queries" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def adamw(groups: Any, lr: float, **kwargs: Any) -> torch.optim.AdamW:
    """AdamW over ``groups`` (parameters or parameter groups), fused where it can be."""
    groups = list(groups)
    params = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
    return torch.optim.AdamW(groups, lr=lr, **kwargs, **fused(params))


@dataclass
class SupervisedLoop:
    """Minimise ``loss(sample(rng_t))`` over steps ``t``, one optimiser step per batch.

    Args:
        params: what gradients are clipped over (the optimiser's parameters).
        optimizer, scheduler: built by the trainer (its schedule is its own choice).
        sample: ``rng -> batch``; every random draw of step ``t`` comes from ``rng``.
        loss: ``batch -> scalar tensor``; torch's generator is seeded from ``(seed, t)`` around
            it (and restored after), so random draws inside it repeat on resume too.
        seed: the first half of every step's generator seed.
        grad_clip: max global grad norm; <= 0 means no clipping.
        callbacks: called after each update as ``callback(step, loss, grad_norm)``.
        dist: the process group (:class:`.distributed.Distributed`); None or one process: no
            collectives. With several, ``sample`` draws the global batch and builds this
            process's rows, ``loss`` is their share of the global loss, and the gradients and
            the loss are averaged over processes (one all-reduce) before the non-finite checks
            and clipping; the reported loss is the average.
    """

    params: Sequence[torch.Tensor]
    optimizer: torch.optim.Optimizer
    sample: Callable[[np.random.Generator], Any]
    loss: Callable[[Any], torch.Tensor]
    seed: int
    scheduler: Any = None
    grad_clip: float = 0.0
    callbacks: Iterable[Callback] = ()
    dist: Any = None

    def __post_init__(self) -> None:
        self.params = [p for p in self.params if p.requires_grad]
        self.callbacks = list(self.callbacks)
        self.in_update = False

    def run(self, start: int, stop: int) -> list[float]:
        """Updates ``start .. stop-1``; returns their losses.

        SIGINT and SIGTERM that arrive during an update are held until it and its callbacks
        finish, then raised as ``KeyboardInterrupt``: the trainer always stops between updates,
        where its weights, optimiser and step agree and a checkpoint is exact."""
        with _deferred_signals() as pending:
            return self._run(start, stop, pending)

    def _run(self, start: int, stop: int, pending: list[int]) -> list[float]:
        losses: list[float] = []
        max_norm = self.grad_clip if self.grad_clip > 0 else float("inf")
        multi = self.dist is not None and self.dist.active
        for step in range(start, stop):
            self.in_update = True
            seeds = np.random.SeedSequence([self.seed, step])
            batch = self.sample(np.random.default_rng(seeds))
            with torch.random.fork_rng(devices=[]):
                # Draws inside the loss (a flow head's noise and times) come from torch's
                # generator, seeded per step so that resuming repeats them too.
                torch.manual_seed(int(seeds.generate_state(1)[0]))
                loss = self.loss(batch)
            if multi:
                # Backward before the check: every process must reach the all-reduce, and
                # the decision is taken on the averaged loss (the same on every process).
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                value, halt = self.dist.reduce_gradients(self.params, loss, bool(pending))
                if not math.isfinite(value):
                    raise _loss_error(value, step)
            else:
                value, halt = float(loss.detach()), False
                if not math.isfinite(value):
                    raise _loss_error(value, step)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
            if not math.isfinite(grad_norm):
                raise NonFiniteError(f"gradient norm is {grad_norm} at step {step + 1}: the "
                                     "update is skipped and training stops (lower the "
                                     "learning rate, or check the data)")
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            losses.append(value)
            self.in_update = False
            for callback in self.callbacks:
                callback(step + 1, losses[-1], grad_norm)
            # Several processes stop together, on the signal as the all-reduce saw it (one that
            # arrives later is counted at the next step's).
            if halt if multi else pending:
                who = pending[0] if pending else "(to another process)"
                raise KeyboardInterrupt(f"signal {who} after step {step + 1}")
        return losses


def _loss_error(value: float, step: int) -> NonFiniteError:
    return NonFiniteError(f"loss is {value} at step {step + 1}: check the dataset for NaN/inf "
                          "values and the learning rate")


@contextlib.contextmanager
def _deferred_signals():
    """Record SIGINT/SIGTERM instead of raising at once (main thread only; elsewhere a no-op)."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: pending.append(signum))
    try:
        yield pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def train_steps(policy: nn.Module, sample_batch: Callable[[np.random.Generator], Any],
                loss_fn: Callable[[nn.Module, Any], torch.Tensor], cfg: Any,
                steps: int | None = None, lr: float | None = None,
                log: Callable[[int, float], None] | None = None) -> list[float]:
    """AdamW + warm-up/cosine + grad clipping for ``steps`` (default ``cfg.steps``) steps at
    peak ``lr`` (default ``cfg.lr``). Batch ``t`` comes from a generator seeded ``(seed, t)``.
    Returns the training losses. ``cfg`` is a ``BCConfig`` (seed, steps, lr, weight_decay,
    warmup_steps, min_lr_ratio, grad_clip): the optimiser settings multi-task, continual and
    curriculum training share with BC."""
    steps = cfg.steps if steps is None else int(steps)
    lr = cfg.lr if lr is None else float(lr)
    policy.train()
    optimizer = adamw(decay_groups(policy, cfg.weight_decay), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(min(cfg.warmup_steps, steps // 4), steps, cfg.min_lr_ratio))
    callbacks = [] if log is None else [lambda step, loss, _norm: log(step, loss)]
    loop = SupervisedLoop(list(policy.parameters()), optimizer, sample_batch,
                          lambda batch: loss_fn(policy, batch), cfg.seed, scheduler,
                          cfg.grad_clip, callbacks)
    losses = loop.run(0, steps)
    policy.eval()
    return losses
