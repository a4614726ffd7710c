"""Rate limits: a GCRA bucket per key, shared by every replica."""

from __future__ import annotations

from tests.coordination.conftest import Replicas

# Slow enough that, on Redis (where time is real), the hits of one test land well
# within one token's interval even on a busy machine.
RATE = 10.0


async def test_burst_is_allowed_then_refused_then_allowed_again(replicas: Replicas) -> None:
    limiter, _ = replicas.limiters()
    assert [await limiter.hit("user:alice", rate=RATE, burst=3) for _ in range(3)] == [0.0] * 3
    retry_after = await limiter.hit("user:alice", rate=RATE, burst=3)
    assert 0.0 < retry_after <= 1 / RATE
    await replicas.lapse(retry_after + 0.01)
    assert await limiter.hit("user:alice", rate=RATE, burst=3) == 0.0


async def test_refused_hits_do_not_use_up_tokens(replicas: Replicas) -> None:
    limiter, _ = replicas.limiters()
    await limiter.hit("user:alice", rate=RATE, burst=1)
    refusals = [await limiter.hit("user:alice", rate=RATE, burst=1) for _ in range(20)]
    assert all(0.0 < retry <= 1 / RATE for retry in refusals)


async def test_each_key_has_its_own_bucket(replicas: Replicas) -> None:
    limiter, _ = replicas.limiters()
    await limiter.hit("user:alice", rate=RATE, burst=1)
    assert await limiter.hit("user:alice", rate=RATE, burst=1) > 0.0
    assert await limiter.hit("user:bob", rate=RATE, burst=1) == 0.0


async def test_replicas_share_one_limit(replicas: Replicas) -> None:
    first, second = replicas.limiters()
    assert await first.hit("user:alice", rate=1.0, burst=2) == 0.0
    assert await second.hit("user:alice", rate=1.0, burst=2) == 0.0
    assert await first.hit("user:alice", rate=1.0, burst=2) > 0.0
    assert await second.hit("user:alice", rate=1.0, burst=2) > 0.0
