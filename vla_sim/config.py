"""One way to build dataclass configs from defaults, a YAML file and ``key=value`` overrides.

OmegaConf structured configs give type checking and reject unknown keys, so a typo in a YAML
file or on the command line fails loudly instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not fit the config dataclass."""


def load_config(cls: type[T], yaml_path: str | Path | None = None,
                overrides: Sequence[str] = (), base: T | None = None) -> T:
    """Return ``cls`` built from ``base`` (or its defaults), then the YAML file, then overrides.

    Overrides use dotted keys, e.g. ``["lr=3e-4", "vision.channels=[32,64]"]``. Unknown keys and
    values of the wrong type raise :class:`ConfigError` naming the key.
    """
    schema = OmegaConf.structured(base if base is not None else cls)
    try:
        merged = schema
        if yaml_path is not None:
            path = Path(yaml_path)
            if not path.is_file():
                raise ConfigError(f"config file not found: {path}")
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        if overrides:
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"overrides must look like key=value, got {bad}")
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:  # unknown key, bad type, ...
        raise ConfigError(f"bad {cls.__name__} config: {exc}") from None
    # to_object runs __post_init__ of the dataclass, so validation errors surface here too.
    return obj  # type: ignore[return-value]


def config_to_dict(cfg: Any) -> dict:
    """Plain-data dict of a (nested) dataclass config, for JSON/YAML files."""
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type[T], data: dict) -> T:
    """Rebuild a config from :func:`config_to_dict` output, rejecting unknown keys."""
    schema = OmegaConf.structured(cls)
    try:
        return OmegaConf.to_object(OmegaConf.merge(schema, OmegaConf.create(data)))  # type: ignore
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad {cls.__name__} config: {exc}") from None


def save_config_yaml(cfg: Any, path: str | Path) -> None:
    """Write a config as YAML atomically."""
    from vla_sim.utils.io import atomic_write_text

    atomic_write_text(Path(path), OmegaConf.to_yaml(OmegaConf.structured(cfg)))
