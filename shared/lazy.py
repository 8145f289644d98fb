"""Modules imported, and clients built, on first use: a function that never needs them never pays their import
(cold start).

`lazy_module("google.cloud.tasks_v2")` stands for the module; its first attribute access imports it (once:
Python's import lock and `sys.modules` make that thread-safe). Type checkers see the real module through an
`if TYPE_CHECKING:` import beside it.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any


class LazyModule:
    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{' (loaded)' if self._module is not None else ''}>"


def lazy_module(name: str) -> Any:
    return LazyModule(name)


class LazyObject:
    """Stands for an object built on first use: `lazy_object(make, "Firestore client")`. The first attribute
    access calls `make()` (once, under a lock) and every access goes to what it built. For a client whose
    library is heavy to import (the Firestore client pulls gRPC, protobuf and google-auth): a function whose
    first answer needs no Firestore read does not wait for it."""

    __slots__ = ("_make", "_label", "_lock", "_obj")

    def __init__(self, make: Callable[[], Any], label: str) -> None:
        self._make = make
        self._label = label
        self._lock = threading.Lock()
        self._obj: Any = None

    def _target(self) -> Any:
        obj = self._obj
        if obj is None:
            with self._lock:
                obj = self._obj
                if obj is None:
                    obj = self._obj = self._make()
        return obj

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._target(), attr)

    def __repr__(self) -> str:
        return f"<lazy {self._label}{' (built)' if self._obj is not None else ''}>"


def lazy_object(make: Callable[[], Any], label: str) -> Any:
    return LazyObject(make, label)
