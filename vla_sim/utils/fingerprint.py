"""Reproducibility fingerprint: which code, libraries and renderer produced a result.

A report carries one so that a later run can say *why* its numbers differ (a new pybullet, a
different commit) before anyone compares success rates.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

# The renderer every vla-sim camera uses (headless, deterministic on the CPU).
RENDERER = "ER_TINY_RENDERER"

# distribution name on PyPI -> key in the fingerprint
_LIBRARIES = {
    "vla-sim": "vla_sim",
    "pybullet": "pybullet",
    "numpy": "numpy",
    "torch": "torch",
    "gymnasium": "gymnasium",
}


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_revision(path: Path | None = None) -> str | None:
    """The commit of the git checkout holding ``path`` (default: this package), else None.

    A trailing ``+dirty`` marks uncommitted changes to tracked files. Never raises: an installed
    wheel, a missing git binary or a slow filesystem all give None.
    """
    path = Path(path) if path is not None else Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                             text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=path, capture_output=True, text=True, timeout=5)
        suffix = "+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else ""
        return rev.stdout.strip() + suffix
    except (OSError, subprocess.SubprocessError):
        return None


def fingerprint() -> dict[str, Any]:
    """Plain-data description of the software that produced a result (JSON-ready)."""
    versions = {key: _dist_version(dist) for dist, key in _LIBRARIES.items()}
    return {
        "versions": {"python": platform.python_version(), **versions},
        "git_revision": git_revision(),
        "renderer": RENDERER,
        "platform": platform.platform(),
    }


def fingerprint_differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(field, old value, new value)`` for every fingerprint field that differs.

    Library versions are reported as ``versions.<name>``; fields missing on one side count as
    None, so an old report without a field still compares.
    """
    diffs: list[tuple[str, Any, Any]] = []
    old_versions = dict(old.get("versions") or {})
    new_versions = dict(new.get("versions") or {})
    for name in sorted(set(old_versions) | set(new_versions)):
        if old_versions.get(name) != new_versions.get(name):
            diffs.append((f"versions.{name}", old_versions.get(name), new_versions.get(name)))
    for key in sorted((set(old) | set(new)) - {"versions"}):
        if old.get(key) != new.get(key):
            diffs.append((key, old.get(key), new.get(key)))
    return diffs
