"""The simulator in a process of its own answers as the in-process one does, and is driven through its admin."""

from __future__ import annotations

import pytest

from shared.sim import SimConfig
from shared.sim.process import SimProcess
from tests.sim.conftest import Kis


def test_a_simulator_process_counts_refuses_and_takes_faults_like_the_in_process_one():
    with SimProcess(SimConfig(env="real", seed=3)) as sim:
        assert len(sim.symbols()) == 2500
        kis = Kis(sim).login()
        assert kis.price("005930").json()["rt_cd"] == "0"
        stats = sim.stats()
        assert stats["calls"] == {"FHKST01010100": 1} and stats["limit_per_s"] == 18
        answers = [kis.price("005930").json().get("msg_cd") for _ in range(25)]  # one second's limit is 18
        assert "EGW00201" in answers and sim.stats()["violations"] == 0
        sim.reset_stats()
        assert sim.stats()["calls"] == {}
        assert sim.set_faults(latency_ms=5)["latency_ms"] == 5
        assert sim.expire_tokens() == 1
        with pytest.raises(ValueError, match="faults"):
            sim.set_faults(no_such_fault=1)
        proc = sim._proc
    assert proc is not None and proc.poll() is not None  # stopped with the block


def test_settings_the_command_line_cannot_carry_are_refused():
    with pytest.raises(ValueError, match="positions"):
        SimProcess(SimConfig(positions=3))
