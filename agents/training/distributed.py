"""Data-parallel training over processes started by ``torchrun`` (gloo on the CPU, NCCL on CUDA).

The global batch of step ``t`` stays the one drawn from ``default_rng([seed, t])``: every
process draws it whole (indices and augmentation numbers, cheap), builds tensors only for its
own contiguous rows (``rows``), and the gradients are averaged over processes before clipping
and the optimiser step. So a run on W processes follows the one-process run with the same
``batch_size`` (the global batch), to float rounding, and a resumed or differently-sized run
sees the same data.

Two ways to make the loss the global one:

* a plain mean over samples (the action autoencoder): each process takes the mean over its
  rows; equal rows per process make the average of those means the global mean;
* any other loss (masked means such as BC's action-chunk padding and grounding visibility,
  contrastive InfoNCE): the expensive per-sample part runs on the process's rows and its
  outputs are all-gathered with gradient (:func:`gather`, :meth:`Distributed.gathered`); the
  cheap rest of the loss then sees the whole global batch on every process, so every process
  computes exactly the one-process loss.

Only rank 0 writes (checkpoints, logs, TensorBoard) and validates; the others wait at
barriers. Nothing here runs unless ``WORLD_SIZE`` > 1 or a process group already exists.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as tdist
from torch import nn

T = TypeVar("T")

TIMEOUT = datetime.timedelta(minutes=30)
"""How long a process waits at a collective (rank 0's in-training evaluation and checkpoints
run while the others wait at a barrier; they must finish within it)."""


class RankFailed(ValueError):
    """Rank 0 failed at a step that only it runs (the others raise this, naming its error)."""


@dataclass(frozen=True)
class Distributed:
    """This process's place in the process group; ``Distributed()`` is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """More than one process: collectives run."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and logs and runs validation."""
        return self.rank == 0

    def rows(self, batch_size: int, name: str = "batch_size") -> slice:
        """This process's contiguous rows of a global batch of ``batch_size`` (the setting
        ``name``, which the error names)."""
        if batch_size % self.world_size:
            raise ValueError(f"{name} {batch_size} must divide by the {self.world_size} "
                             f"training processes ({name} is the global batch; each process "
                             "takes an equal share of its rows)")
        share = batch_size // self.world_size
        return slice(self.rank * share, (self.rank + 1) * share)

    def device(self, device: torch.device) -> torch.device:
        """``cuda`` -> this process's GPU (``cuda:LOCAL_RANK``) when several processes train."""
        if self.active and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    # ------------------------------------------------------------------- collectives
    def barrier(self) -> None:
        if self.active:
            tdist.barrier()

    def main_only(self, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` on rank 0 only; an error there is raised on every process (a
        :class:`RankFailed` naming it on the others) instead of leaving them waiting."""
        if not self.active:
            return fn()
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001 - re-raised below, once the others know
                error = exc
        message = [None if error is None else f"{type(error).__name__}: {error}"]
        tdist.broadcast_object_list(message, src=0)
        if error is not None:
            raise error
        if message[0] is not None:
            raise RankFailed(f"rank 0 failed: {message[0]}")
        return result

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0, then on the others (for work that fills a shared cache on
        disk: the dataset's frame cache, the instruction features)."""
        result = self.main_only(fn)
        if self.active and not self.is_main:
            result = fn()
        return result  # type: ignore[return-value]

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every process (same start everywhere)."""
        if not self.active:
            return
        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                tdist.broadcast(tensor.data, src=0)

    def reduce_gradients(self, params: Sequence[torch.Tensor], loss: torch.Tensor,
                         stop: bool) -> tuple[float, bool]:
        """Average the gradients of ``params`` and the loss over processes, in one all-reduce;
        returns (mean loss, whether any process asked to stop). A parameter without a
        gradient on every process keeps none (as in one process: the optimiser skips it)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        device = grads[0].device if grads else loss.device
        flat = torch.cat([g.reshape(-1).float() for g in grads] + [
            torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                         device=device),
            loss.detach().float().reshape(1).to(device),
            torch.tensor([float(stop)], device=device)])
        tdist.all_reduce(flat)  # SUM
        offset = 0
        n = len(params)
        has_grad = flat[-2 - n:-2]
        for i, p in enumerate(params):
            size = p.numel()
            if has_grad[i] > 0:
                p.grad = (flat[offset:offset + size] / self.world_size).view_as(p).to(p.dtype)
            offset += size
        return float(flat[-2]) / self.world_size, bool(flat[-1] > 0)

    # ----------------------------------------------------------------- global batch
    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's rows of ``tensor`` concatenated in rank order (the global batch),
        with gradient: see :func:`gather`."""
        return gather(tensor, self) if self.active else tensor

    @contextlib.contextmanager
    def gathered(self, module: nn.Module, method: str = "forward") -> Iterator[None]:
        """Within the block, ``module.<method>`` returns the whole global batch's outputs
        (every tensor of its result, also inside tuples and dicts, gathered with gradient)
        while computing only this process's rows. Used around a loss whose expensive part is
        that method and whose rest couples the samples (masked means): the loss is then the
        one-process loss on every process. A no-op for one process."""
        if not self.active:
            yield
            return
        original = getattr(module, method)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            return _map_tensors(original(*args, **kwargs), self.gather)

        setattr(module, method, wrapped)  # an instance attribute shadows the class's method
        try:
            yield
        finally:
            delattr(module, method)


class _Gather(torch.autograd.Function):
    """All-gather along dim 0; backward sums every process's gradient of the gathered tensor
    and keeps this process's rows. Each process computes the same loss from the gathered
    batch, so the sum is ``world_size`` times the loss's gradient; averaging the parameter
    gradients afterwards (:meth:`Distributed.reduce_gradients`) divides it back out, and the
    parameters used after the gather (identical on every process) keep their full gradient."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        tdist.all_gather(parts, tensor)
        ctx.rows = slice(rank * tensor.shape[0], (rank + 1) * tensor.shape[0])
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous().clone()
        tdist.all_reduce(grad)
        return grad[ctx.rows], None, None


def gather(tensor: torch.Tensor, dist: Distributed) -> torch.Tensor:
    """Rows of every process, in rank order, with gradient (equal row counts required)."""
    return _Gather.apply(tensor, dist.rank, dist.world_size)


def _map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(_map_tensors(v, fn) for v in value)
    if isinstance(value, list):
        return [_map_tensors(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


def current() -> Distributed:
    """The process group this process is in (one process when there is none)."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return Distributed()
    return Distributed(tdist.get_rank(), tdist.get_world_size(),
                       int(os.environ.get("LOCAL_RANK", tdist.get_rank())))


def launched_world_size() -> int:
    """``WORLD_SIZE`` as set by ``torchrun`` (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[Distributed]:
    """The process group for a training run: joins the one ``torchrun`` describes in its
    environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
    ``MASTER_PORT``) and leaves it at the end; an existing group is used as it is (and left
    alone); without ``torchrun`` it is a single process. Backend: NCCL when ``device`` is
    CUDA (``auto`` with a GPU), else gloo."""
    if tdist.is_available() and tdist.is_initialized():
        yield current()
        return
    if launched_world_size() <= 1:
        yield Distributed()
        return
    if not tdist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    tdist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    try:
        yield current()
    finally:
        tdist.destroy_process_group()


__all__ = ["Distributed", "RankFailed", "current", "gather", "launched_world_size", "session"]
