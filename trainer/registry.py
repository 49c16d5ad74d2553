"""A small name -> object registry: the extension point for optimizers, constructors, schedulers."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from trainer.errors import RecipeError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; also resolves ``"package.module:Name"`` dotted paths."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: list[Callable[[Registry[T]], None]] = []

    def add_lazy(self, populate: Callable[[Registry[T]], None]) -> None:
        """Defer filling part of the registry (e.g. importing timm.optim) until first lookup."""
        self._lazy.append(populate)

    def _populate(self) -> None:
        while self._lazy:
            self._lazy.pop(0)(self)

    def register(self, obj: T | None = None, *, name: str | None = None, force: bool = False) -> Any:
        """Register `obj` under `name` (default: its ``__name__``); usable as a decorator."""

        def add(item: T) -> T:
            key = name or getattr(item, "__name__", None)
            if not key:
                raise ValueError(f"cannot register {item!r} without a name")
            if key in self._items and self._items[key] is not item and not force:
                raise KeyError(f"{self.kind} {key!r} is already registered")
            self._items[key] = item
            return item

        if obj is None:
            return add
        return add(obj)

    def names(self) -> list[str]:
        self._populate()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._populate()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str, key: str = "type") -> T:
        """Look `name` up, or import it when it is a ``module:attr`` path; RecipeError otherwise."""
        self._populate()
        if name in self._items:
            return self._items[name]
        if ":" in name:
            return _import_dotted(name, key)
        raise RecipeError(
            key,
            f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}"
            f" (registered: {len(self._items)}; a custom one is 'package.module:Name')",
        )


def _import_dotted(path: str, key: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise RecipeError(key, f"cannot import module {module_name!r} from {path!r}: {err}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise RecipeError(key, f"module {module_name!r} has no {attr!r}{did_you_mean(attr, names)}") from None
