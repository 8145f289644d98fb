"""Firestore emulator (the SDK's, via shared.cloud.FirestoreEmulator) for the order and API key stores."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import free_port


def firestore_emulator_session() -> Iterator[str]:
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):  # started by another module or by the developer
        yield os.environ["FIRESTORE_EMULATOR_HOST"]
        return
    from shared.cloud import FirestoreEmulator

    reason = FirestoreEmulator.missing()
    if reason:
        pytest.skip(f"Firestore emulator tests need the Google Cloud SDK: {reason}")
    emulator = FirestoreEmulator(free_port())
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.start()
    try:
        yield emulator.host
    finally:
        os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        emulator.stop()


@pytest.fixture(scope="session")
def firestore_host() -> Iterator[str]:
    yield from firestore_emulator_session()


@pytest.fixture
def firestore_client(firestore_host: str):
    from google.cloud import firestore

    client = firestore.Client(project=f"test-{uuid.uuid4().hex[:10]}")  # a unique project: nothing shared
    yield client
    client.close()
