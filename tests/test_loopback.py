"""Ports for the processes the development tools start."""

import itertools
import socket

from shared import loopback
from shared.loopback import HIGH, LOW, quiet_port


def test_ports_are_free_below_the_ephemeral_range_and_never_handed_out_twice():
    picks = [quiet_port() for _ in range(200)]
    assert len(set(picks)) == len(picks)
    assert all(LOW <= p < HIGH for p in picks)
    for port in picks[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_taken_port_is_skipped(monkeypatch):
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", quiet_port()))
        taken.listen()
        busy = taken.getsockname()[1]
        monkeypatch.setattr(loopback, "_sequence", itertools.count(busy - LOW))  # the next pick would be it
        assert quiet_port() != busy
    finally:
        taken.close()
