"""Silence C-level stdout: PyBullet prints banners ("argv[0]=", its build time) from C."""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager
from typing import Iterator


def _flush_c_stdout() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to flush (non-POSIX)
        pass


@contextmanager
def quiet_stdout(stream: str = "stdout") -> Iterator[None]:
    """Silence the C-level ``stream`` (``stdout`` = fd 1, ``stderr`` = fd 2) for the block."""
    py_stream = getattr(sys, stream)
    try:
        fd = py_stream.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. pytest capture without a real fd
        yield
        return
    py_stream.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        _flush_c_stdout()  # C stdio buffers; flush them while they still point at devnull
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)
