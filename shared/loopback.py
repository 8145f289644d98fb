"""Loopback ports for the development tools (local stack, emulators, benchmark, tests).

A port picked by binding port 0 comes from the kernel's ephemeral range (32768 and up on Linux), which is
also where every outgoing connection on the machine takes its source port. Between picking such a port and
the child process binding it (seconds for a Python or Java start-up), a busy test run can take it, and the
child exits. Ports here come from below that range, in sequence from a random start, so two picks of one
process never coincide and outgoing connections never take them.
"""

from __future__ import annotations

import itertools
import random
import socket
import threading

LOW, HIGH = 20000, 32000  # below Linux's default ephemeral range (ip_local_port_range 32768-60999)

_lock = threading.Lock()
_sequence = itertools.count(random.randrange(HIGH - LOW))


def quiet_port(host: str = "127.0.0.1") -> int:
    """A port free now on `host`, below the ephemeral range, not handed out before by this process."""
    for _ in range(HIGH - LOW):
        with _lock:
            port = LOW + next(_sequence) % (HIGH - LOW)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {LOW} and {HIGH} on {host}")
