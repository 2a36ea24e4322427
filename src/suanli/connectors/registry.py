"""Connectors by name. Factories are imported lazily so heavy client libraries load only when used."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..domain.errors import InvalidInput
from .base import Connector

Factory = Callable[[Mapping[str, Any], Path], Connector]

# name -> "module:function" (resolved on first use) or a factory registered at run time
_REGISTRY: dict[str, str | Factory] = {
    "local": "suanli.connectors.local:create",
    "slurm": "suanli.connectors.slurm:create",
    "ray": "suanli.connectors.ray:create",
    "suanli": "suanli.connectors.suanli:create",
}


def register(name: str, factory: str | Factory) -> None:
    _REGISTRY[name] = factory


def available() -> list[str]:
    return sorted(_REGISTRY)


def create(name: str, config: Mapping[str, Any], home: Path) -> Connector:
    """Build a connector for a center. `home` is suanli's data directory (for local state)."""
    target = _REGISTRY.get(name)
    if target is None:
        raise InvalidInput(
            f"unknown connector {name!r}; available: {', '.join(available())}", field="connector"
        )
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = target
    assert callable(target)
    return target(config, home)
