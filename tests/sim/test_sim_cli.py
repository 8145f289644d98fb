"""`kisgw sim` entry: prints the base URL, serves, stops on request."""

from __future__ import annotations

import re
import threading
import time

import requests

from shared.sim.cli import run


def test_run_serves_until_stopped(capsys, port):
    stop = threading.Event()
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(run(["--port", str(port), "--env", "paper",
                                                               "--profile", "kis-legacy", "--seed", "5"], stop)))
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                stats = requests.get(url + "/__admin/stats", timeout=1).json()
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "simulator did not start"
                time.sleep(0.05)
        assert stats["env"] == "paper" and stats["limit_per_s"] == 2
    finally:
        stop.set()
        thread.join(10)
    assert codes == [0]
    assert re.search(rf"at {re.escape(url)}\b", capsys.readouterr().out)


def test_bad_flags_fail_fast(capsys):
    assert run(["--error-rate", "3"]) == 2
