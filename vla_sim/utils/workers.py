"""Worker pools that start once and then serve many jobs: spawned processes or Ray actors.

Every parallel command (collection, evaluation, DAgger rollouts) has the same shape: each worker
builds some expensive state once (a PyBullet client, a policy, a text encoder), then runs many
small jobs against it, and the caller commits the results in index order, so the output does not
depend on the backend, the number of workers or the order jobs finish in.

    backend "process"  a spawn ``ProcessPoolExecutor`` whose initializer builds the state; its
                       processes die with the command (``die_with_parent``).
    backend "ray"      long-lived Ray actors (one process each, anywhere in a Ray cluster) that
                       run the same initializer once and then serve jobs; ``ray_address`` joins
                       an existing cluster, else a local Ray is started on demand.

A job is a picklable module-level function and its arguments; it reads the state the initializer
left in its module's globals (a worker is one process, so module globals are per worker). A Ray
worker may run on another machine: results come back to the caller (which alone writes files),
and a checkpoint folder reaches the workers through :func:`ship_folder`.
:meth:`WorkerPool.submit` returns a :class:`concurrent.futures.Future` for both backends, so
callers use ``wait`` / ``as_completed`` / ``result`` as with any executor.

Torch threads: a worker gets ``max(1, cores // workers)`` (``OMP_NUM_THREADS`` before torch
loads, ``torch.set_num_threads`` once it has), so workers x threads = cores and no worker's
thread pool fights another's for the same cores. Ray workers get the CPUs Ray reserves for them.

Ray is optional (``pip install 'vla-sim[ray]'``) and imported only when a Ray backend is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import multiprocessing as mp
import os
import queue
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vla_sim.utils.procs import die_with_parent

log = logging.getLogger(__name__)

BACKENDS = ("process", "ray")
RAY_INSTALL = "pip install 'vla-sim[ray]'"
RAY_START_TIMEOUT_S = 180.0
"""How long Ray may take to place and start the workers before the pool gives up, naming the
cluster's CPUs (a cluster whose CPUs are held by other jobs would otherwise wait forever)."""


# ------------------------------------------------------------------------------------ settings
def check_backend(backend: str, ray_address: str = "") -> None:
    """Raise ValueError for an unknown backend, or a Ray address given to the process backend.
    Configs call this from ``__post_init__``, so a bad flag fails before any work."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if ray_address and backend != "ray":
        raise ValueError(f"ray_address {ray_address!r} is only used with backend 'ray' (got "
                         f"backend {backend!r}); add --backend ray or drop --ray-address")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Torch threads per worker so that workers x threads = cores (at least 1)."""
    return max(1, (cores if cores is not None else available_cores()) // max(1, int(workers)))


def set_torch_threads(threads: int) -> None:
    """Limit this process's torch (and OpenMP/MKL) thread pools to ``threads``: through the
    environment before torch loads, through ``torch.set_num_threads`` once it has."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(int(threads))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(int(threads))


# ------------------------------------------------------------------ inside a worker (any backend)
_INIT_ERROR: BaseException | None = None


def _start_worker(initializer: Callable[..., Any] | None, initargs: Sequence[Any],
                  threads: int, die: bool) -> None:
    """Run in every worker before its first job. An initializer error is kept and raised by
    every job instead: a broken pool then reports the initializer's own exception to the caller
    (a process pool would otherwise only say that a process died)."""
    global _INIT_ERROR
    if die:
        die_with_parent()  # a killed command leaves no orphaned workers
    set_torch_threads(threads)
    try:
        if initializer is not None:
            initializer(*initargs)
    except Exception as exc:  # noqa: BLE001  (handed to the caller by _call)
        _INIT_ERROR = exc
    set_torch_threads(threads)  # the initializer may have imported torch


def _call(fn: Callable[..., Any], args: Sequence[Any]) -> Any:
    if _INIT_ERROR is not None:
        raise _INIT_ERROR
    return fn(*args)


class _RayWorker:
    """The Ray actor: one process that runs the initializer once and then serves jobs."""

    def __init__(self, threads: int):
        self.threads = int(threads)

    def ready(self) -> int:
        return os.getpid()

    def start(self, initializer: Callable[..., Any] | None, initargs: Sequence[Any]) -> None:
        _start_worker(initializer, initargs, self.threads, die=False)  # Ray reaps its actors

    def run(self, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
        return _call(fn, args)


# ------------------------------------------------------------------------------------ Ray
def import_ray():
    """The ``ray`` module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"backend 'ray' needs Ray, an optional extra: {RAY_INSTALL}") from None
    return ray


def connect_ray(address: str = ""):
    """Connect this process to Ray once: to ``address`` (``host:port``, ``auto`` for a cluster
    started with ``ray start`` on this machine, or ``ray://...``), or with no address to a
    local Ray started here with this machine's cores. An existing connection is reused."""
    ray = import_ray()
    if not ray.is_initialized():
        if address:
            try:
                ray.init(address=address, log_to_driver=True)
            except Exception as exc:  # noqa: BLE001  (Ray raises several types for this)
                if not _wants_auth_token(exc) or os.environ.get("RAY_AUTH_MODE"):
                    raise
                # `ray start` turns on token authentication when a token is at hand
                # (~/.ray/auth_token), but a driver only sends it in token mode
                log.info("Ray cluster %s wants its auth token: retrying with "
                         "RAY_AUTH_MODE=token", address)
                with contextlib.suppress(Exception):
                    ray.shutdown()
                os.environ["RAY_AUTH_MODE"] = "token"
                ray.init(address=address, log_to_driver=True)
        else:
            ray.init(address="local", num_cpus=available_cores(), include_dashboard=False,
                     log_to_driver=True)
    return ray


def _wants_auth_token(exc: BaseException) -> bool:
    """Whether Ray refused this driver for lacking the cluster's auth token."""
    text = f"{type(exc).__name__}: {exc}"
    return "InvalidAuthToken" in text or "Authentication token is missing" in text


def _node_cpus(ray) -> list[float]:
    return [float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]


def cpus_per_worker(node_cpus: Sequence[float], workers: int) -> float:
    """CPUs to reserve per Ray worker: the largest whole number such that ``workers`` of them
    fit on the nodes (uniform sizes, so any placement fits); with more workers than CPUs, the
    largest fraction 1/k that fits. 0 when the cluster reports no CPUs."""
    workers = max(1, int(workers))
    if sum(node_cpus) <= 0:
        return 0.0
    for size in range(int(max(node_cpus)), 0, -1):
        if sum(int(c // size) for c in node_cpus) >= workers:
            return float(size)
    k = 2
    while sum(int(c * k + 1e-9) for c in node_cpus) < workers:
        k += 1
    return 1.0 / k


class RayWorkers:
    """``count`` long-lived actors spread over a Ray cluster, each with its share of the CPUs
    (Ray reserves them, so workers x threads never exceeds a node's cores). ``call(i, fn, *a)``
    runs ``fn(*a)`` on actor ``i`` after its initializer; calls to one actor run in order."""

    def __init__(self, count: int, initializer: Callable[..., Any] | None = None,
                 initargs: Sequence[Any] = (), address: str = "",
                 start_timeout_s: float = RAY_START_TIMEOUT_S):
        ray = connect_ray(address)
        self._ray = ray
        nodes = _node_cpus(ray)
        cpus = cpus_per_worker(nodes, count)
        self.threads = max(1, int(cpus))
        actor_cls = ray.remote(_RayWorker).options(num_cpus=cpus, max_restarts=0)
        self.actors = [actor_cls.remote(self.threads) for _ in range(int(count))]
        ready = [a.ready.remote() for a in self.actors]
        _, missing = ray.wait(ready, num_returns=len(ready), timeout=start_timeout_s)
        if missing:
            self.close()
            raise RuntimeError(
                f"Ray placed only {len(ready) - len(missing)} of {count} workers "
                f"({cpus:g} CPU each) within {start_timeout_s:.0f} s; the cluster's nodes have "
                f"{nodes} CPUs and other jobs may hold them: use fewer workers or free the cluster")
        self.pids = ray.get(ready)
        # Initializers run in every actor at once; a job sent to an actor waits for its own.
        for actor in self.actors:
            actor.start.remote(initializer, tuple(initargs))

    def call(self, index: int, fn: Callable[..., Any], *args: Any):
        """``fn(*args)`` on actor ``index``: a Ray ObjectRef."""
        return self.actors[index].run.remote(fn, args)

    def get(self, refs):
        """``ray.get`` with a job's own exception (not Ray's wrapper) raised."""
        try:
            return self._ray.get(refs)
        except Exception as exc:  # noqa: BLE001
            raise _unwrap(exc) from None

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):  # already dead
                self._ray.kill(actor)
        self.actors = []


def _unwrap(exc: BaseException) -> BaseException:
    """A job's own exception from Ray's RayTaskError (its message keeps the remote traceback)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and type(exc).__name__.startswith("RayTaskError"):
        with contextlib.suppress(Exception):  # an exception type that refuses attributes
            cause.__cause__ = RuntimeError(f"in a Ray worker:\n{exc}")
        return cause
    return exc


class _RayBackend:
    """Jobs go to whichever actor is idle, one job per actor at a time, as in a process pool:
    a thread pool with one thread per actor does the queueing, the futures and cancellation
    (each thread hands its jobs to its own actor and blocks on the result)."""

    def __init__(self, workers: int, initializer, initargs, address: str):
        self._workers = RayWorkers(workers, initializer, initargs, address)
        self.threads = self._workers.threads
        free: queue.SimpleQueue = queue.SimpleQueue()
        for index in range(len(self._workers.actors)):
            free.put(index)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=len(self._workers.actors),
                                        thread_name_prefix="vla-sim-ray",
                                        initializer=self._bind, initargs=(free,))

    def _bind(self, free: queue.SimpleQueue) -> None:
        self._local.actor = free.get_nowait()  # this thread's actor for the pool's lifetime

    def _run(self, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
        return self._workers.get(self._workers.call(self._local.actor, fn, *args))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self._pool.submit(self._run, fn, args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)  # queued jobs never start
        self._workers.close()  # running jobs end with their actors
        self._pool.shutdown(wait=True)


class _ProcessBackend:
    def __init__(self, workers: int, initializer, initargs, threads: int):
        self.threads = threads
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=mp.get_context("spawn"),  # no forked PyBullet state
            initializer=_start_worker, initargs=(initializer, tuple(initargs), threads, True))
        self._pending: set[Future] = set()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future = self._pool.submit(_call, fn, args)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    def start(self, workers: int) -> None:
        """Spawn every process now (the executor spawns one per job it cannot place), so
        their start-up overlaps whatever the caller does before its first job."""
        for _ in range(workers):
            self._pool.submit(_noop)

    def shutdown(self) -> None:
        if not self._pending:
            # Every job has returned and the workers hold nothing the caller still needs (only
            # the caller writes files): end them at once. A graceful exit (interpreter teardown
            # with torch, PyBullet and the text encoder loaded) took 1.7 s, a serial cost at the
            # end of every parallel command.
            for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                with contextlib.suppress(Exception):
                    process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _noop() -> None:
    return None


# --------------------------------------------------------------------- folders for the workers
@dataclass(frozen=True)
class ShippedFolder:
    """A small folder (a policy checkpoint) for workers that may not share this machine's disk.

    Process workers read ``source`` itself. With Ray, the folder's files travel once through the
    object store, and each worker writes them to a local folder named by their digest (reused by
    every later job and run that ships the same bytes)."""

    source: str
    digest: str = ""
    ref: Any = None  # a Ray ObjectRef of {file name: bytes}; None: read ``source``

    def path(self) -> str:
        """The folder's path in this worker."""
        if self.ref is None:
            return self.source
        if self.digest not in _LOCAL_COPIES:
            dest = Path(tempfile.gettempdir()) / "vla_sim_shipped" / self.digest
            if not dest.is_dir():
                files = import_ray().get(self.ref)
                tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
                tmp.mkdir(parents=True, exist_ok=True)
                for name, data in files.items():
                    (tmp / name).write_bytes(data)
                try:
                    os.replace(tmp, dest)
                except OSError:  # another worker on this node wrote it first
                    shutil.rmtree(tmp, ignore_errors=True)
            _LOCAL_COPIES[self.digest] = str(dest)
        return _LOCAL_COPIES[self.digest]


_LOCAL_COPIES: dict[str, str] = {}


def ship_folder(directory: str | Path, backend: str, ray_address: str = "",
                suffixes: Sequence[str] | None = None) -> ShippedFolder:
    """``directory`` as the workers of ``backend`` will see it: its files (not sub-folders),
    only those ending in one of ``suffixes`` when given."""
    check_backend(backend, ray_address)
    if backend != "ray":
        return ShippedFolder(str(directory))
    files = {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir())
             if p.is_file() and (suffixes is None or p.name.endswith(tuple(suffixes)))}
    digest = hashlib.sha256()
    for name, data in files.items():
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return ShippedFolder(str(directory), digest.hexdigest()[:24],
                         connect_ray(ray_address).put(files))


# ------------------------------------------------------------------------------------ the pool
class WorkerPool:
    """``workers`` workers on ``backend``, each running ``initializer(*initargs)`` once, then
    ``fn(*args)`` for every :meth:`submit`. Use as a context manager or call :meth:`shutdown`.

    Processes start with the first jobs (or :meth:`start`); Ray actors are placed when the pool
    is made (an error names the cluster's CPUs if they cannot be) and start their initializers
    at once.
    """

    def __init__(self, workers: int, initializer: Callable[..., Any] | None = None,
                 initargs: Sequence[Any] = (), backend: str = "process", ray_address: str = ""):
        check_backend(backend, ray_address)
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers, self.backend = int(workers), backend
        if backend == "ray":
            self._impl: Any = _RayBackend(self.workers, initializer, initargs, ray_address)
        else:
            self._impl = _ProcessBackend(self.workers, initializer, initargs,
                                         threads_per_worker(self.workers))
        self.threads = self._impl.threads
        log.info("worker pool: %d %s worker(s), %d torch thread(s) each", self.workers, backend,
                 self.threads)

    def start(self) -> WorkerPool:
        """Start every worker's initializer now rather than with the first jobs, so that the
        workers' start-up (imports, env, policy) overlaps the caller's own preparation. Ray
        actors already start when the pool is made."""
        if isinstance(self._impl, _ProcessBackend):
            self._impl.start(self.workers)
        return self

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run ``fn(*args)`` in a worker; ``fn`` must be picklable (a module-level function)."""
        return self._impl.submit(fn, *args)

    def map(self, fn: Callable[..., Any], items: Iterable[Any]) -> Iterator[Any]:
        """``fn(item)`` for every item, all submitted at once, yielded in item order."""
        futures = [self.submit(fn, item) for item in items]
        try:
            for fut in futures:
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()

    def shutdown(self) -> None:
        """Cancel queued jobs, end the workers (a process pool lets running jobs finish)."""
        self._impl.shutdown()

    def __enter__(self) -> WorkerPool:  # noqa: PYI034  (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


__all__ = ["BACKENDS", "RAY_INSTALL", "RayWorkers", "ShippedFolder", "WorkerPool",
           "available_cores", "check_backend", "connect_ray", "cpus_per_worker", "import_ray",
           "set_torch_threads", "ship_folder", "threads_per_worker"]
