"""Real loopback sockets (no KIS): what the pooled session does when the peer is silent, gone or rude."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from shared.kis.client import KISClient
from shared.kis.errors import KISTimeoutError, KISTransportError
from tests.conftest import free_port
from tests.kis.fake_kis import TOKEN, make_settings


class RawPeer:
    """Accepts connections and does `behaviour` with each: "silent" (never answers) or "drop" (closes)."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.settimeout(1.0)
            with contextlib.suppress(OSError):
                conn.recv(65536)  # the request arrives, so it was sent
            if self.behaviour == "drop":
                conn.close()
            else:
                self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._held:
            conn.close()
        self.sock.close()


@pytest.fixture
def peer(request) -> Iterator[RawPeer]:
    p = RawPeer(request.param)
    yield p
    p.close()


def client_for(port: int) -> KISClient:
    settings = make_settings(kis_base_url=f"http://127.0.0.1:{port}", kis_http_timeout_s=0.3)
    return KISClient(settings, token_provider=lambda: TOKEN)


@pytest.mark.parametrize("peer", ["silent"], indirect=True)
def test_silent_peer_is_a_timeout_with_request_sent(peer):
    with client_for(peer.port) as client, pytest.raises(KISTimeoutError) as info:
        client.place_cash_order("buy", "005930", 1, "limit", 100)
    assert info.value.sent is True
    assert peer.accepted == 1  # sent once, never resent by the pool


@pytest.mark.parametrize("peer", ["drop"], indirect=True)
def test_dropped_connection_is_transport_error_with_request_sent(peer):
    with client_for(peer.port) as client, pytest.raises(KISTransportError) as info:
        client.place_cash_order("buy", "005930", 1, "limit", 100)
    assert not isinstance(info.value, KISTimeoutError)
    assert info.value.sent is True
    assert peer.accepted == 1


def test_refused_connection_is_transport_error_not_sent():
    with client_for(free_port()) as client, pytest.raises(KISTransportError) as info:
        client.get_balance()
    assert info.value.sent is False
    assert "1234567801"[:8] not in str(info.value)
