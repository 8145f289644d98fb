"""What a function's identity may use, enforced where the parts are built (shared/gateway.py).

A function the deployment description gives no Firestore access gets `Denied` instead of a client, one with
read-only access gets `ReadOnlyFirestore`; either fails loudly (`AccessDenied`) on a use the identity lacks,
locally exactly where IAM would refuse it in the cloud.
"""

from __future__ import annotations

from typing import Any

_WRITES = frozenset({"set", "update", "delete", "create", "add", "batch", "transaction", "bulk_writer",
                     "recursive_delete"})
_NESTED = frozenset({"collection", "document", "collection_group", "where", "order_by", "limit"})


class AccessDenied(PermissionError):
    """The function's identity does not hold this permission (shared/deployment.py)."""


class Denied:
    """Stands where a client would be for an identity without the grant: any use raises AccessDenied."""

    def __init__(self, what: str, function: str) -> None:
        object.__setattr__(self, "_message", f"function {function!r} holds no {what} access "
                                             "(shared/deployment.py); this code path needs it")

    def __getattr__(self, name: str) -> Any:
        raise AccessDenied(object.__getattribute__(self, "_message"))

    def __repr__(self) -> str:
        return "Denied()"


class ReadOnlyFirestore:
    """A Firestore client (or collection/document/query of one) on which every write raises AccessDenied."""

    def __init__(self, inner: Any, function: str) -> None:
        self._inner = inner
        self._function = function

    def __getattr__(self, name: str) -> Any:
        if name in _WRITES:
            raise AccessDenied(f"function {self._function!r} holds read-only Firestore access "
                               f"(shared/deployment.py); {name}() is a write")
        value = getattr(self._inner, name)
        if name in _NESTED and callable(value):
            def nested(*args: Any, **kwargs: Any) -> ReadOnlyFirestore:
                return ReadOnlyFirestore(value(*args, **kwargs), self._function)
            return nested
        return value

    def __repr__(self) -> str:
        return f"ReadOnlyFirestore({self._function!r})"
