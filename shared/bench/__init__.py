"""Benchmarks of the gateway on the local stack against the KIS simulator, side by side with a naive gateway.

`run(argv) -> int` is the `kisgw bench` subcommand.
"""

from __future__ import annotations


def run(argv: list[str] | None = None) -> int:
    from shared.bench.cli import run as run_bench

    return run_bench(argv)
