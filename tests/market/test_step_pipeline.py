"""The step pipeline against the real local Redis: the commands of one loop step's callers go out together, and
each caller gets its own replies and errors."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis

from shared.market.step_pipeline import MAX_COMMANDS, StepPipeline


class CountingClient(aioredis.Redis):
    """The real client, counting the pipelines it opens."""

    pipelines = 0

    def pipeline(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        CountingClient.pipelines += 1
        return super().pipeline(*args, **kwargs)


def test_one_steps_callers_share_one_pipeline_and_each_gets_its_own_replies(redis_url, redis_prefix):
    async def go():
        client = CountingClient.from_url(redis_url)
        steps = StepPipeline(client)
        await client.set(f"{redis_prefix}:text", "x")
        CountingClient.pipelines = 0
        # 20 callers in one step (41 commands, within MAX_COMMANDS): each sets and reads its own key; caller 7
        # also runs a command on a wrong type.
        async def caller(i: int) -> list:
            cmds = [("SET", f"{redis_prefix}:k{i}", str(i)), ("GET", f"{redis_prefix}:k{i}")]
            if i == 7:
                cmds.append(("LPUSH", f"{redis_prefix}:text", "y"))
            return await steps.run(*cmds)

        assert MAX_COMMANDS >= 20 * 2 + 1
        got = await asyncio.gather(*(caller(i) for i in range(20)))
        opened = CountingClient.pipelines
        # A later step is a pipeline of its own.
        later = await steps.run(("GET", f"{redis_prefix}:k3"))
        await client.aclose()
        return got, opened, later

    got, opened, later = asyncio.run(go())
    assert opened == 1
    for i, replies in enumerate(got):
        assert replies[0] is True and replies[1] == str(i).encode()
    assert len(got[7]) == 3 and isinstance(got[7][2], redis.exceptions.ResponseError)
    assert all(len(r) == 2 for i, r in enumerate(got) if i != 7)
    assert later == [b"3"]


def test_a_step_larger_than_the_cap_goes_out_in_several_pipelines(redis_url, redis_prefix):
    async def go():
        client = CountingClient.from_url(redis_url)
        steps = StepPipeline(client, max_commands=10)
        CountingClient.pipelines = 0
        got = await asyncio.gather(*(steps.run(("INCR", f"{redis_prefix}:n")) for _ in range(35)))
        opened = CountingClient.pipelines
        await client.aclose()
        return got, opened

    got, opened = asyncio.run(go())
    assert opened == 4  # 10 + 10 + 10 + 5
    assert sorted(r[0] for r in got) == list(range(1, 36))


def test_a_script_redis_lost_is_loaded_again(redis_url, redis_prefix):
    async def go():
        client = aioredis.Redis.from_url(redis_url)
        steps = StepPipeline(client)
        script = client.register_script(f"return redis.call('INCRBY', KEYS[1], ARGV[1]) -- {redis_prefix}")
        # Never loaded (its text is this test's own; as after a restart or SCRIPT FLUSH): the first EVALSHA is
        # NOSCRIPT.
        assert (await client.script_exists(script.sha)) == [False]
        first = await steps.script(script, [f"{redis_prefix}:s"], [5])
        second = await steps.script(script, [f"{redis_prefix}:s"], [2])
        with pytest.raises(redis.exceptions.ResponseError):
            await steps.script(client.register_script("return redis.call('NOSUCHCOMMAND')"), [], [])
        await client.aclose()
        return first, second

    assert asyncio.run(go()) == (5, 7)


def test_a_connection_failure_reaches_every_caller_of_the_pipeline():
    async def go():
        # Nothing listens on port 1: the pipeline's connection fails.
        client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
        steps = StepPipeline(client)
        got = await asyncio.gather(*(steps.run(("GET", "k")) for _ in range(5)), return_exceptions=True)
        await client.aclose()
        return got

    got = asyncio.run(go())
    assert len(got) == 5 and all(isinstance(g, redis.exceptions.ConnectionError) for g in got)
