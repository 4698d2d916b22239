"""One way to build dataclass configs from defaults, a YAML file and ``key=value`` overrides.

OmegaConf structured configs give type checking and reject unknown keys, so a typo in a YAML
file or on the command line fails loudly instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not fit the config dataclass."""


def load_config(cls: type[T], yaml_path: str | Path | None = None,
                overrides: Sequence[str] = (), base: T | None = None,
                values: dict[str, Any] | None = None) -> T:
    """Return ``cls`` built from ``base`` (or its defaults), then the YAML file, then overrides,
    then ``values`` (top-level field -> value, e.g. from command-line flags).

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
            for override in overrides:  # one at a time, so an error can name its key
                merged = _merge(merged, OmegaConf.from_dotlist([override]), override)
        for key, value in (values or {}).items():
            merged = _merge(merged, OmegaConf.create({key: value}), f"--{key}")
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:  # unknown key, bad type, ...
        raise ConfigError(f"bad {cls.__name__} config: {exc}") from None
    except yaml.YAMLError as exc:  # a malformed file: one line naming it and where
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{yaml_path}:{where}: not valid YAML ({problem})") from None
    # to_object runs __post_init__ of the dataclass, so validation errors surface here too.
    return obj  # type: ignore[return-value]


def _merge(base: Any, update: Any, what: str) -> Any:
    """``OmegaConf.merge``, with its TypeError (a mapping given for a list field or the
    reverse) turned into a ConfigError naming the override."""
    try:
        return OmegaConf.merge(base, update)
    except TypeError as exc:
        raise ConfigError(f"{what}: a value of the wrong kind ({exc})") from None


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


# ------------------------------------------------------------------------ command-line flags
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its first documentation line: the string literal under the field, else the
    ``#`` comment on its line. What ``--help`` shows, read from the dataclass itself."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:] + [None]):
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            name = node.target.id
            if (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[name] = nxt.value.value.strip().split("\n")[0]
            elif "#" in lines[node.lineno - 1]:
                docs[name] = lines[node.lineno - 1].split("#", 1)[1].strip()
    return docs


def _flag_type(annotation: Any, default: Any):
    """(argparse type callable, nargs-free) for a scalar or comma-separated sequence field."""
    text = str(annotation)
    if "bool" in text and isinstance(default, bool):
        return None
    if "list" in text or "tuple" in text:
        return lambda s: [p.strip() for p in s.split(",") if p.strip()]
    for name, kind in (("float", float), ("int", int)):
        if name in text:
            return (lambda s, k=kind: None if s.lower() in ("none", "null") else k(s)) \
                if "None" in text else kind
    return str


def add_config_arguments(parser: Any, cls: type, skip: Sequence[str] = (),
                         required: Sequence[str] = (), files: bool = True) -> None:
    """Give ``parser`` the one config path every command shares: ``--config FILE.yaml``,
    ``key=value`` overrides (dotted keys reach nested configs), and a ``--flag`` for each
    scalar or list field of ``cls`` (defaults, types and help from the dataclass; booleans get
    ``--x/--no-x``; lists are comma-separated). Precedence: defaults < YAML < overrides < flags."""
    import argparse

    if files:
        parser.add_argument("--config", default=None, help=f"{cls.__name__} YAML file")
        parser.add_argument("overrides", nargs="*",
                            help=f"{cls.__name__} overrides key=value (dotted keys)")
    docs = field_docs(cls)
    group = parser.add_argument_group(f"{cls.__name__} fields")
    for f in dataclasses.fields(cls):
        if f.name in skip or dataclasses.is_dataclass(f.default_factory
                                                      if callable(f.default_factory) else None):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if dataclasses.is_dataclass(default) or isinstance(default, dict):
            continue  # nested configs: key=value overrides (e.g. policy.cameras=[front,wrist])
        kind = _flag_type(f.type, default)
        flag = "--" + f.name.replace("_", "-")
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        help_text = (docs.get(f.name, "") + (f" (default: {shown})" if shown not in ("", None)
                                             else "")).strip().replace("%", "%%")  # argparse
        if kind is None:
            group.add_argument(flag, dest=f"cfg__{f.name}", action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
        elif isinstance(default, (list, tuple)):  # comma-separated, repeatable
            group.add_argument(flag, dest=f"cfg__{f.name}", type=kind, action="extend",
                               default=None, required=f.name in required, help=help_text,
                               metavar=f.name.upper())
        else:
            group.add_argument(flag, dest=f"cfg__{f.name}", type=kind, default=None,
                               required=f.name in required, help=help_text,
                               metavar=f.name.upper())


def flag_values(args: Any) -> dict[str, Any]:
    """The config fields given as explicit flags (field name -> value)."""
    return {k[len("cfg__"):]: v for k, v in vars(args).items()
            if k.startswith("cfg__") and v is not None}


def config_from_args(cls: type[T], args: Any) -> T:
    """The config ``add_config_arguments`` describes: defaults, then ``--config``, then the
    ``key=value`` overrides, then the explicit flags."""
    flags = flag_values(args)
    return load_config(cls, getattr(args, "config", None), list(getattr(args, "overrides", [])),
                       values=flags)
