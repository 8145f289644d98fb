"""The design's proof: many processes × threads hammering one app key never put more than N grants in any
1-second window (by the Redis-time stamps of the grants), and are not starved (≥ 75 % of N here; the
benchmark reports budget use)."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
import redis

N = 18
PROCESSES = 4
THREADS = 8
HAMMER_S = 6.0
CLASSES = ("orders", "quotes", "reference")


def hammer(redis_url: str, prefix: str, proc: int) -> tuple[list[int], int]:
    """One process: THREADS threads acquiring from the agreed start for HAMMER_S. Returns grant stamps,
    attempts."""
    import redis

    from shared.config import load_settings
    from shared.market.limiter import Grant, RateLimitTimeout, SlidingLimiter

    client = redis.Redis.from_url(redis_url)
    limiter = SlidingLimiter(client, load_settings({}, gateway_budget=N), "fleet", prefix=prefix)
    limiter.start_fresh()  # a new test prefix: no call was ever made (else the first window is held back)
    stamps: list[int] = []
    attempts = [0]
    lock = threading.Lock()
    plain_try = limiter.try_acquire

    def counted_try(call_class: str) -> object:
        with lock:
            attempts[0] += 1
        return plain_try(call_class)

    limiter.try_acquire = counted_try  # type: ignore[method-assign]
    # Ready; the parent names the start once every process is (a spawned interpreter may take seconds).
    client.incr(f"{prefix}:ready")
    give_up = time.monotonic() + 40
    while (go := client.get(f"{prefix}:go")) is None and time.monotonic() < give_up:
        time.sleep(0.01)
    assert go is not None, "never told to start"
    start_at = float(go)
    stop_at = start_at + HAMMER_S

    def worker(i: int) -> None:
        call_class = CLASSES[(proc * THREADS + i) % len(CLASSES)]
        time.sleep(max(0.0, start_at - time.time()))
        while time.time() < stop_at:
            try:
                got = limiter.acquire(call_class, deadline_s=2.0)
            except RateLimitTimeout:
                continue
            with lock:
                if isinstance(got, Grant) and time.time() < stop_at:
                    stamps.append(got.at_us)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stamps, attempts[0]


def max_in_any_window(stamps: list[int], window_us: int = 1_000_000) -> int:
    """Most grants in any half-open window [s, s + 1 s) — checking windows that start at each grant suffices."""
    best, j = 0, 0
    for i in range(len(stamps)):
        while j < len(stamps) and stamps[j] < stamps[i] + window_us:
            j += 1
        best = max(best, j - i)
    return best


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_no_window_ever_holds_more_than_n_across_processes(redis_url, redis_prefix):
    ctx = multiprocessing.get_context("spawn")
    client = redis.Redis.from_url(redis_url)
    with ctx.Pool(PROCESSES) as pool:
        pending = pool.starmap_async(hammer, [(redis_url, redis_prefix, p) for p in range(PROCESSES)])
        give_up = time.monotonic() + 40
        while int(client.get(f"{redis_prefix}:ready") or 0) < PROCESSES and time.monotonic() < give_up:
            time.sleep(0.05)
        client.set(f"{redis_prefix}:go", repr(time.time() + 0.3))
        results = pending.get(timeout=50)
    stamps = sorted(s for r, _ in results for s in r)
    assert len(stamps) == len(set(stamps))
    worst = max_in_any_window(stamps)
    # Throughput over whole seconds from the first grant (the log admits N per second, in bursts).
    rate = sum(1 for s in stamps if s < stamps[0] + 5_000_000) / 5.0
    attempts = sum(a for _, a in results)
    print(f"\ngrants={len(stamps)} rate={rate:.2f}/s max_in_1s_window={worst} (N={N}) "
          f"script_calls_per_grant={attempts / len(stamps):.1f}")
    assert worst <= N
    # Not starved (the budget use figure itself is the benchmark's: on a busy 2-core machine the callers'
    # own scheduling costs a few grants a second).
    assert rate >= 0.75 * N
    assert (stamps[-1] - stamps[0]) / 1e6 >= 5.0
