"""Firestore backends of the order idempotency records and the API keys: one document per key.

The claim is `create()`, which fails with AlreadyExists when the document is there: Firestore itself
decides which of several concurrent requests (on any instance) owns the key. Settling is an update or
delete with a last-update-time precondition, after checking the owner, so a late or foreign writer
loses instead of overwriting. Records carry `expires_at` (a timestamp: give the collection a Firestore
TTL policy on it) and an expired record is treated as absent on read, since TTL deletion is lazy.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.clock import SYSTEM_CLOCK, Clock
from shared.lazy import lazy_module
from shared.orders.api_keys import FIRESTORE_COLLECTION, ApiKeyRecord
from shared.orders.idempotency import IN_PROGRESS, RECORD_TTL_S, Claim, IdempotencyRecord, record_id

if TYPE_CHECKING:
    from google.api_core import exceptions as api_errors
else:
    api_errors = lazy_module("google.api_core.exceptions")  # loaded with the client, on the first call

_RACE_ATTEMPTS = 3


class _Collection:
    """One collection of `client`, resolved on first use: the client may itself be built on first use (its
    library loads when a request first needs Firestore, not at start-up)."""

    def __init__(self, client: Any, collection: str) -> None:
        self._client = client
        self._collection_name = collection
        self._collection_ref: Any = None

    @property
    def _collection(self) -> Any:
        ref = self._collection_ref
        if ref is None:
            ref = self._collection_ref = self._client.collection(self._collection_name)
        return ref


class FirestoreIdempotencyStore(_Collection):
    def __init__(self, client: Any, *, collection: str = "order_idempotency", clock: Clock = SYSTEM_CLOCK,
                 ttl_s: float = RECORD_TTL_S) -> None:
        super().__init__(client, collection)
        self._clock = clock
        self._ttl_s = ttl_s

    def _doc(self, key: str) -> Any:
        return self._collection.document(record_id(key))

    def _fields(self, record: IdempotencyRecord) -> dict[str, Any]:
        return {
            "state": record.state,
            "fingerprint": record.fingerprint,
            "owner": record.owner,
            "created_at": record.created_at,
            "expires_at": datetime.fromtimestamp(record.created_at + self._ttl_s, UTC),
            "status": record.status,
            # The answer as one JSON string: stored and returned byte for byte, whatever its shape.
            "body": None if record.body is None else json.dumps(record.body, ensure_ascii=False),
        }

    def _read(self, key: str) -> tuple[IdempotencyRecord | None, Any]:
        """The live record (None when absent or expired) and the snapshot it came from."""
        snap = self._doc(key).get()
        if not snap.exists:
            return None, None
        data = snap.to_dict() or {}
        expires = data.get("expires_at")
        if expires is not None and expires.timestamp() <= self._clock.time():
            return None, snap
        body = data.get("body")
        record = IdempotencyRecord(state=data["state"], fingerprint=data["fingerprint"], owner=data["owner"],
                                   created_at=float(data["created_at"]), status=data.get("status"),
                                   body=None if body is None else json.loads(body))
        return record, snap

    def claim(self, key: str, fingerprint: str, owner: str) -> Claim:
        record = IdempotencyRecord(IN_PROGRESS, fingerprint, owner, self._clock.time())
        doc = self._doc(key)
        for _ in range(_RACE_ATTEMPTS):
            try:
                doc.create(self._fields(record))
                return Claim(True, record)
            except api_errors.AlreadyExists:
                pass
            existing, snap = self._read(key)
            if existing is not None:
                return Claim(False, existing)
            if snap is not None:  # expired but not yet swept: remove it unless someone else just did
                with contextlib.suppress(api_errors.FailedPrecondition, api_errors.NotFound):
                    doc.delete(option=self._client.write_option(last_update_time=snap.update_time))
        raise RuntimeError("idempotency claim kept racing; try again")

    def get(self, key: str) -> IdempotencyRecord | None:
        return self._read(key)[0]

    def finish(self, key: str, owner: str, status: int, body: dict[str, Any]) -> bool:
        current, snap = self._read(key)
        if current is None or current.owner != owner or current.state != IN_PROGRESS:
            return False
        fields = self._fields(current.finished(status, body))
        try:
            self._doc(key).update(fields, option=self._client.write_option(last_update_time=snap.update_time))
        except (api_errors.FailedPrecondition, api_errors.NotFound):
            return False
        return True

    def release(self, key: str, owner: str) -> bool:
        current, snap = self._read(key)
        if current is None or current.owner != owner or current.state != IN_PROGRESS:
            return False
        try:
            self._doc(key).delete(option=self._client.write_option(last_update_time=snap.update_time))
        except (api_errors.FailedPrecondition, api_errors.NotFound):
            return False
        return True


class FirestoreApiKeyStore(_Collection):
    """One document per key id in `api_keys`."""

    def __init__(self, client: Any, *, collection: str = FIRESTORE_COLLECTION) -> None:
        super().__init__(client, collection)

    def put(self, record: ApiKeyRecord) -> None:
        self._collection.document(record.key_id).set(record.to_fields())

    def get(self, key_id: str) -> ApiKeyRecord | None:
        snap = self._collection.document(key_id).get()
        return ApiKeyRecord.from_fields(snap.to_dict() or {}) if snap.exists else None

    def all(self) -> list[ApiKeyRecord]:
        return [ApiKeyRecord.from_fields(s.to_dict() or {}) for s in self._collection.stream()]
