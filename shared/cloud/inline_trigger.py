"""The in-process drain trigger (`TASK_QUEUE=local://`, `inline://`): an adapter of `market.ports.DrainTrigger`
with the same per-slot dedup as Cloud Tasks' task names; the drain runs on a background thread (`local://`) or
in the caller's thread (`inline://`). It imports no Google client library."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import OrderedDict

from shared.market.ports import DrainCallback, drain_task_id

log = logging.getLogger(__name__)


class InlineTrigger:
    """Runs `fn(kind, call_class, slot)` once per slot, on a background thread unless `background=False`."""

    def __init__(self, fn: DrainCallback, *, background: bool = True, remember: int = 4096) -> None:
        self._fn = fn
        self._background = background
        self._remember = remember
        self._seen: OrderedDict[tuple[str, str, int], None] = OrderedDict()
        self._lock = threading.Lock()
        self._running: set[threading.Thread] = set()

    def request_drain(self, kind: str, call_class: str, slot: int) -> bool:
        drain_task_id(kind, call_class, slot)  # same validation as the Cloud Tasks names
        key = (kind, call_class, slot)
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        if not self._background:
            self._run(key)
            return True
        ctx = contextvars.copy_context()  # the drain's logs keep the asking request's id
        thread = threading.Thread(target=ctx.run, args=(self._run, key), name=f"drain-{kind}-{call_class}",
                                  daemon=True)
        with self._lock:
            self._running.add(thread)
        thread.start()
        return True

    def _run(self, key: tuple[str, str, int]) -> None:
        try:
            self._fn(*key)
        except Exception:  # a failed drain leaves its symbols pending; the next slot's drain takes them
            log.exception("inline drain %s/%s/%s failed", *key)
        finally:
            with self._lock:
                self._running.discard(threading.current_thread())

    def join(self, timeout: float) -> bool:
        """Wait for running background drains; True when none is left."""
        with self._lock:
            threads = list(self._running)
        for t in threads:
            t.join(timeout)
        with self._lock:
            return not self._running
