"""The torch-free half of a policy checkpoint: its file names, registered types and
``config.json``. A command that only needs to know what a checkpoint reads (its cameras, image
size) imports this, not torch: an evaluation with worker processes then starts its workers
without first paying torch's import in the parent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
POLICY_TYPE = "vla"
# policy_type -> what a folder of that type holds (rebuilt by load_policy)
POLICY_TYPES = ("vla", "vla_multihead", "vla_latent")


class CheckpointMismatchError(ValueError):
    """Checkpoint weights do not fit the architecture its config (or the caller) describes."""


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no policy checkpoint at {directory} (missing {CONFIG_FILE})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointMismatchError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointMismatchError(f"{path}: expected a JSON object, got {type(data).__name__}")
    if data.get("policy_type") not in POLICY_TYPES:
        raise CheckpointMismatchError(
            f"{path}: policy_type {data.get('policy_type')!r}, expected one of {POLICY_TYPES}")
    return data


def policy_type_of(data: dict[str, Any]) -> str:
    """The registered type of a parsed config.json. Checkpoints written before the registry
    said ``vla`` and flagged the others in ``meta`` (``multitask``, ``latent_action``)."""
    kind = data["policy_type"]
    meta = data.get("meta", {})
    if kind == "vla" and (meta.get("multitask") or {}).get("heads") == "per-task":
        return "vla_multihead"
    if kind == "vla" and meta.get("latent_action"):
        return "vla_latent"
    return kind
