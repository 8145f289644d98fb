"""Modules imported on first use: a function that never needs them never pays their import (cold start).

`lazy_module("google.cloud.tasks_v2")` stands for the module; its first attribute access imports it (once:
Python's import lock and `sys.modules` make that thread-safe). Type checkers see the real module through an
`if TYPE_CHECKING:` import beside it.
"""

from __future__ import annotations

import importlib
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
