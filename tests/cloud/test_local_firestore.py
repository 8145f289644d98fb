"""The Firestore emulator starts even when the port it picked is taken before Java binds it."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from shared.cloud import local_firestore
from shared.cloud.local_firestore import FirestoreEmulator

pytestmark = pytest.mark.skipif(FirestoreEmulator.missing() is not None,
                                reason=f"needs the Google Cloud SDK's emulator: {FirestoreEmulator.missing()}")


def test_a_taken_port_is_retried_on_another_one(monkeypatch):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    real = local_firestore.quiet_port
    picks = iter([busy])
    monkeypatch.setattr(local_firestore, "quiet_port", lambda host: next(picks, None) or real(host))
    emulator = FirestoreEmulator()
    assert emulator.host.endswith(f":{busy}")
    try:
        host = emulator.start()
        assert not host.endswith(f":{busy}")
        with urllib.request.urlopen(f"http://{host}/", timeout=5) as resp:
            assert resp.status == 200
    finally:
        emulator.stop()
        taken.close()


def test_a_fixed_port_that_is_taken_names_the_reason():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        emulator = FirestoreEmulator(taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="exited with code"):
            emulator.start()
