"""ObjectCache: whole small objects by key, bounded in bytes, oldest use out first."""

from __future__ import annotations

from callfs.metrics import Metrics
from callfs.objectcache import ObjectCache


def test_objects_over_the_per_object_limit_or_empty_are_not_kept() -> None:
    cache = ObjectCache(capacity=100, max_object=10)

    cache.put(("localfs", "big"), b"x" * 11)
    cache.put(("localfs", "empty"), b"")

    assert not cache.holds(11) and not cache.holds(0) and cache.holds(10)
    assert cache.get(("localfs", "big")) is None
    assert cache.size == 0


def test_the_least_recently_used_objects_leave_first() -> None:
    cache = ObjectCache(capacity=30, max_object=10)
    for name in "abc":
        cache.put(("localfs", name), name.encode() * 10)

    assert cache.get(("localfs", "a")) == b"a" * 10  # a is now the most recent
    cache.put(("localfs", "d"), b"d" * 10)

    assert cache.get(("localfs", "b")) is None
    assert [cache.get(("localfs", n)) is not None for n in "acd"] == [True, True, True]
    assert cache.size == 30


def test_the_per_object_limit_never_exceeds_the_capacity() -> None:
    cache = ObjectCache(capacity=8, max_object=64)

    assert not cache.holds(9)


def test_hits_misses_and_size_are_counted() -> None:
    metrics = Metrics()
    cache = ObjectCache(capacity=100, max_object=10, metrics=metrics)

    cache.get(("s3", "k"))
    cache.put(("s3", "k"), b"12345")
    cache.get(("s3", "k"))

    text = metrics.render().decode()
    assert "callfs_object_cache_hits_total 1.0" in text
    assert "callfs_object_cache_misses_total 1.0" in text
    assert "callfs_object_cache_bytes 5.0" in text
