"""Single-use link records, against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from callfs.errors import AlreadyExists
from callfs.metadata.base import LinkRecord, MetadataStore
from tests.metadata.conftest import StoreTarget
from tests.metadata.entries import T0

NOW = T0 + timedelta(minutes=10)


def link(token_id: str, *, expires_in: timedelta = timedelta(hours=1)) -> LinkRecord:
    return LinkRecord(
        token_id=token_id,
        path="/reports/q1.pdf",
        expires_at=NOW + expires_in,
        created_by="alice",
        created_at=T0,
    )


async def test_consume_marks_the_link_used_and_returns_it(store: MetadataStore) -> None:
    await store.create_link(link("t1"))
    outcome, record = await store.consume_link("t1", NOW)
    assert outcome == "consumed"
    assert record == LinkRecord(
        "t1", "/reports/q1.pdf", NOW + timedelta(hours=1), "alice", T0, used_at=NOW
    )


async def test_second_consume_says_used(store: MetadataStore) -> None:
    await store.create_link(link("t1"))
    await store.consume_link("t1", NOW)
    outcome, record = await store.consume_link("t1", NOW + timedelta(seconds=1))
    assert outcome == "used"
    assert record is not None and record.used_at == NOW


async def test_consume_after_expiry_says_expired(store: MetadataStore) -> None:
    await store.create_link(link("t1", expires_in=timedelta(seconds=30)))
    outcome, record = await store.consume_link("t1", NOW + timedelta(seconds=30))
    assert outcome == "expired"
    assert record is not None and record.used_at is None


async def test_consume_of_unknown_token_says_not_found(store: MetadataStore) -> None:
    assert await store.consume_link("nope", NOW) == ("not_found", None)


async def test_fifty_concurrent_consumes_succeed_exactly_once(store: MetadataStore) -> None:
    await store.create_link(link("t1"))
    outcomes = await asyncio.gather(*(store.consume_link("t1", NOW) for _ in range(50)))
    assert [outcome for outcome, _ in outcomes].count("consumed") == 1
    assert [outcome for outcome, _ in outcomes].count("used") == 49


async def test_concurrent_consumes_through_two_replicas_succeed_once(
    store: MetadataStore, store_target: StoreTarget
) -> None:
    other = store_target.build()
    await other.open()
    try:
        await store.create_link(link("t1"))
        calls = [(store if n % 2 else other).consume_link("t1", NOW) for n in range(50)]
        outcomes = [outcome for outcome, _ in await asyncio.gather(*calls)]
    finally:
        await other.close()
    assert outcomes.count("consumed") == 1 and outcomes.count("used") == 49


async def test_released_link_can_be_consumed_again(store: MetadataStore) -> None:
    await store.create_link(link("t1"))
    await store.consume_link("t1", NOW)
    await store.release_link("t1")
    outcome, _ = await store.consume_link("t1", NOW)
    assert outcome == "consumed"


async def test_creating_a_token_twice_raises_already_exists(store: MetadataStore) -> None:
    await store.create_link(link("t1"))
    with pytest.raises(AlreadyExists):
        await store.create_link(link("t1"))


async def test_purge_removes_expired_links_used_or_not_in_batches(store: MetadataStore) -> None:
    for n in range(5):
        await store.create_link(link(f"expired-{n}", expires_in=-timedelta(seconds=n)))
    for n in range(3):
        await store.create_link(link(f"expired-used-{n}", expires_in=timedelta(seconds=30)))
        await store.consume_link(f"expired-used-{n}", NOW)
    for n in range(2):
        await store.create_link(link(f"used-{n}"))
        await store.consume_link(f"used-{n}", NOW)
    for n in range(2):
        await store.create_link(link(f"live-{n}"))
    later = NOW + timedelta(seconds=30)
    assert [await store.purge_links(later, 3) for _ in range(4)] == [3, 3, 2, 0]
    assert await store.consume_link("expired-used-0", later) == ("not_found", None)
    assert await store.consume_link("expired-4", later) == ("not_found", None)
    for n in range(2):
        outcome, _ = await store.consume_link(f"used-{n}", later)
        assert outcome == "used"
    for n in range(2):
        outcome, _ = await store.consume_link(f"live-{n}", later)
        assert outcome == "consumed"


async def test_purge_keeps_a_used_link_until_it_expires(store: MetadataStore) -> None:
    await store.create_link(link("t1", expires_in=timedelta(minutes=5)))
    await store.consume_link("t1", NOW)
    assert await store.purge_links(NOW + timedelta(minutes=4), 10) == 0
    assert (await store.consume_link("t1", NOW + timedelta(minutes=4)))[0] == "used"
    assert await store.purge_links(NOW + timedelta(minutes=5), 10) == 1
    assert await store.consume_link("t1", NOW + timedelta(minutes=5)) == ("not_found", None)


async def test_a_link_keeps_the_entry_id_it_was_issued_for(store: MetadataStore) -> None:
    await store.create_link(replace(link("t1"), entry_id="0123456789abcdef0123456789abcdef"))
    await store.create_link(link("t2"))
    _, pinned = await store.consume_link("t1", NOW)
    _, unpinned = await store.consume_link("t2", NOW)
    assert pinned is not None and pinned.entry_id == "0123456789abcdef0123456789abcdef"
    assert unpinned is not None and unpinned.entry_id is None
