"""Name → factory registries for backends, imported lazily so that light paths stay light.

Each backend kind (segmenter, vlm, renderer, hand scorer, ...) has one ``Registry``. A
factory is registered as a dotted path ``"package.module:callable"`` and imported only
when ``create`` is called, so ``--help``, ``--dry-run`` and ``validate`` never import torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from autoshoot.errors import ConfigError


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, str | Callable[..., Any]] = {}

    def register(self, name: str, factory: str | Callable[..., Any]) -> None:
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def check(self, name: str) -> None:
        if name not in self._factories:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid names are: {', '.join(self.names())}")

    def factory(self, name: str) -> Callable[..., Any]:
        self.check(name)
        target = self._factories[name]
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module_name), attr)
            self._factories[name] = target
        return target

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.factory(name)(*args, **kwargs)
