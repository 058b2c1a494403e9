"""Strict, typed loading of ``params.yaml`` sections into frozen dataclasses.

Every tunable number of the pipeline lives in ``params.yaml``; each stage reads its own
section (plus ``base``) through :func:`load_section`. Loading is strict: an unknown key, a
missing key or a value of the wrong type is an error naming the dotted key, so a typo in
``dvc exp run -S sft.lr=...`` fails loudly instead of being ignored.

The section dataclasses themselves live in :mod:`deepinterestgr.common.params`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from deepinterestgr.common.errors import PipelineError

T = TypeVar("T")


class ConfigError(ValueError, PipelineError):
    """A params file does not match its dataclass schema."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; an empty file is an empty mapping."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping at the top level, found {type(data).__name__}"
        )
    return data


def build(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from ``data``, checking keys and types recursively.

    ``where`` is the dotted key path used in error messages (e.g. ``"params.yaml:sft"``).
    """
    return typing.cast(T, _convert(cls, data, where))


def load_section(path: str | Path, section: str, cls: type[T]) -> T:
    """Load section ``section`` of the YAML file ``path`` into dataclass ``cls``."""
    data = load_yaml(path)
    if section not in data:
        raise ConfigError(f"{path}: missing section '{section}'")
    return build(cls, data[section], f"{Path(path).name}:{section}")


def to_dict(obj: Any) -> Any:
    """Turn a (nested) params dataclass back into plain YAML-able data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} matches none of {tp}: {'; '.join(errors)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, found {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, found {value!r}")
        item_type = args[0] if args else Any
        return tuple(_convert(item_type, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, found {value!r}")
        key_type, value_type = args if args else (Any, Any)
        return {
            _convert(key_type, k, f"{where}.{k}"): _convert(value_type, v, f"{where}.{k}")
            for k, v in value.items()
        }
    if tp is float:
        # YAML reads ``1e-4`` as a string and ``1`` as an int: accept both as floats.
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, found {value!r}")
        try:
            number = float(value) if isinstance(value, (int, float, str)) else None
        except ValueError:
            number = None
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if number is None:
            raise ConfigError(f"{where}: expected a number, found {value!r}")
        # YAML reads .nan, .inf and 1e400 as floats; no setting of the pipeline means them.
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, found {value!r}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, found {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, found {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, found {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp}")


def _convert_dataclass(cls: Any, value: Any, where: str) -> Any:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, found {value!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, field in fields.items():
        key = f"{where}.{name}"
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: missing key")
    return cls(**kwargs)
