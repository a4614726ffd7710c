"""The repairer: gives every local-volume file back ``replication.factor`` healthy replicas.

A replica is healthy when its node answered this pass and lists the object. One
pass, on one gateway replica at a time (a coordination lock, as for the reconciler):

1. asks every storage node discovery knows for the keys it holds; a node that does
   not answer (or that discovery no longer names) is *missing* from then on;
2. walks the local-volume files of the namespace in path order, a page at a time,
   and counts each file's replicas: healthy ones, and those on a node missing for
   less than ``replication.repair_after`` (it may come back whole: a restart, an
   upgrade). A replica on a node missing for longer, or on a node that answered
   without the object (a wiped or replaced volume), is lost;
3. copies a file with fewer than R such replicas from a healthy one onto the best
   other nodes of its path's ranking, at most ``replication.repair_rate`` bytes a
   second, checks the copy's SHA-256 against the file's, and records the new
   replica set only while the file still holds that object (else the copies go).

Files written since the pass began are left to the next one: the nodes listed their
keys before those existed. Lost copies left on a node that comes back are no row's
any more, and the reconciler removes them. The keys of every node are held in
memory for the pass (about 100 bytes a key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from callfs import passes
from callfs.backends.base import ObjectRef
from callfs.backends.storage_node import StorageNodeBackend
from callfs.coordination.base import Locks
from callfs.entry import Entry, utcnow
from callfs.errors import CallFSError
from callfs.metadata.base import MetadataStore
from callfs.metrics import Metrics
from callfs.passes import Result
from callfs.runtime import Runtime

logger = logging.getLogger(__name__)

LOCK_KEY = "repairer:pass"
"""The coordination lock a pass holds (path locks are ``path:/...``, so never this)."""

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class RepairReport:
    """What one pass found and did."""

    checked: int = 0
    repaired: int = 0
    degraded: int = 0
    """Files with fewer than R healthy replicas after the pass (waiting ones included)."""
    short: list[str] = field(default_factory=list)
    """Files the pass could not give R replicas (no healthy source, no room, failures)."""
    moved: int = 0
    """Files moved onto the nodes their placement names now (rebalancing, draining)."""
    replicas: Counter[str] = field(default_factory=Counter)
    """Replicas each node holds after the pass, as the metadata records them."""
    missing: list[str] = field(default_factory=list)
    """Nodes that did not answer."""

    @property
    def result(self) -> Result:
        """``ok`` (every file at R), ``partial`` (some still short) or ``failed``."""
        return "ok" if not self.short else "partial"


class Pace:
    """A throttle: awaiting ``pace(n)`` after sending ``n`` bytes keeps the average at
    ``rate`` bytes a second since the first call."""

    def __init__(self, rate: float, *, clock: Clock, sleep: Sleep) -> None:
        self.rate = rate
        self.clock = clock
        self.sleep = sleep
        self.started: float | None = None
        self.sent = 0

    async def __call__(self, count: int) -> None:
        now = self.clock()
        if self.started is None:
            self.started = now
        self.sent += count
        ahead = self.sent / self.rate - (now - self.started)
        if ahead > 0:
            await self.sleep(ahead)


class Repairer:
    """Restores the replica sets of the files of ``store`` on ``backend``'s nodes."""

    def __init__(
        self,
        store: MetadataStore,
        backend: StorageNodeBackend,
        *,
        repair_after: float,
        rate: float,
        rebalance: bool = True,
        metrics: Metrics | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.backend = backend
        self.repair_after = repair_after
        self.rate = rate
        self.rebalance = rebalance
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self.wall = wall
        self._missing_since: dict[str, float] = {}

    async def run_exclusive(self, locks: Locks) -> Result:
        """Run a pass unless another replica holds the repair lock; count the result.

        Never raises: a failure is logged and reported as ``failed``.
        """
        runs = self.metrics.repair_runs if self.metrics is not None else None
        return await passes.exclusive(locks, LOCK_KEY, "repairer", self.run_pass, runs)

    async def run_pass(self) -> RepairReport:
        """Check every local-volume file once and repair those short of replicas.

        Raises:
            BackendUnavailable: the metadata store does not answer.
        """
        report = RepairReport()
        began = self.wall() - passes.RECENT
        now = self.clock()
        holdings = await self._holdings(report)
        for instance_id in holdings:
            self._missing_since.pop(instance_id, None)
        pace = Pace(self.rate, clock=self.clock, sleep=self.sleep)
        async for entry in passes.stored_files(self.store, self.backend.name):
            if entry.ctime > began:
                report.replicas.update(entry.holders)
                continue
            report.checked += 1
            await self._check(entry, holdings, now, pace, report)
        if self.metrics is not None:
            self.metrics.under_replicated.set(report.degraded)
            self.metrics.repair_last_pass.set_to_current_time()
            known = {i for i in self.backend.instances() if i is not None}
            for instance_id in known | set(report.replicas):
                self.metrics.node_replicas.labels(instance_id).set(report.replicas[instance_id])
        if report.repaired or report.short or report.moved:
            logger.info(
                "repairer: %d files checked, %d repaired, %d still short of replicas, %d moved",
                report.checked,
                report.repaired,
                len(report.short),
                report.moved,
            )
        return report

    async def _holdings(self, report: RepairReport) -> dict[str, set[str]]:
        """The keys each answering node holds; the others are noted missing."""
        holdings: dict[str, set[str]] = {}
        for instance_id in self.backend.instances():
            assert instance_id is not None
            try:
                holdings[instance_id] = {
                    stored.key async for stored in self.backend.list_objects(instance_id)
                }
            except CallFSError as exc:
                logger.info("repairer: node %s is missing: %s", instance_id, exc.message)
                report.missing.append(instance_id)
        return holdings

    async def _check(
        self,
        entry: Entry,
        holdings: dict[str, set[str]],
        now: float,
        pace: Pace,
        report: RepairReport,
    ) -> None:
        key = entry.object_key
        assert key is not None
        healthy: list[str] = []
        waiting: list[str] = []
        for instance_id in entry.holders:
            if instance_id in holdings:
                if key in holdings[instance_id]:
                    healthy.append(instance_id)
            elif now - self._missing_since.setdefault(instance_id, now) < self.repair_after:
                waiting.append(instance_id)
        kept = [i for i in entry.holders if i in healthy or i in waiting]
        need = self.backend.replication - len(kept)
        final = kept
        if need > 0:
            final = await self._repair(entry, healthy, kept, need, pace)
            if final is not kept:
                report.repaired += 1
            if len(final) < self.backend.replication:
                report.short.append(entry.path)
        elif self.rebalance and not waiting:
            moved = await self._rebalance(entry, healthy, holdings, now, pace)
            if moved is not None:
                report.moved += 1
                final = moved
        healthy_now = len(healthy) + len(final) - len(kept)
        if healthy_now < self.backend.replication:
            report.degraded += 1
        report.replicas.update(final)

    async def _repair(
        self, entry: Entry, healthy: list[str], kept: list[str], need: int, pace: Pace
    ) -> list[str]:
        """Copy ``entry`` onto up to ``need`` more nodes; return the replicas it has now."""
        if not healthy:
            logger.warning("repairer: %s has no healthy replica to copy from", entry.path)
            return kept
        targets = await self.backend.choose_more(entry.path, need, exclude=set(kept))
        if not targets:
            return kept
        written = await self._copy(entry, healthy, targets, pace)
        if written is None:
            return kept
        replicas = [*kept, *(i for i in written if i not in kept)]
        if not await self._record(entry, replicas, written):
            return kept
        if self.metrics is not None:
            self.metrics.repaired_objects.inc(len(written))
            self.metrics.repaired_bytes.inc(entry.size * len(written))
        logger.info("repairer: %s now on %s", entry.path, ", ".join(replicas))
        return replicas

    async def _rebalance(
        self,
        entry: Entry,
        healthy: list[str],
        holdings: dict[str, set[str]],
        now: float,
        pace: Pace,
    ) -> list[str] | None:
        """Move ``entry`` onto the nodes its placement names now (a node joined, one is
        draining); return its new replicas, or None when it stays.

        The copies are made and recorded before the replicas that leave are removed,
        so the file keeps R copies throughout. A placement naming a node that is not
        answering waits for a later pass.
        """
        present = set(holdings) | {
            node for node, since in self._missing_since.items() if now - since < self.repair_after
        }
        ideal = await self.backend.ideal(entry.path, present=present, holding=set(healthy))
        if len(ideal) < self.backend.replication or set(ideal) == set(healthy):
            return None
        if any(node not in holdings for node in ideal):
            return None
        targets = tuple(node for node in ideal if node not in healthy)
        written = await self._copy(entry, healthy, targets, pace)
        if written is None or set(written) != set(targets):
            if written:
                await self._drop(ObjectRef(self.backend.name, entry.object_key or "", written))
            return None
        if not await self._record(entry, list(ideal), written):
            return None
        leaving = tuple(node for node in healthy if node not in ideal)
        if leaving:
            await self._drop(ObjectRef(self.backend.name, entry.object_key or "", leaving))
        if self.metrics is not None:
            self.metrics.rebalanced_objects.inc(len(written))
            self.metrics.rebalanced_bytes.inc(entry.size * len(written))
        logger.info(
            "repairer: %s moved from %s to %s",
            entry.path,
            ", ".join(healthy),
            ", ".join(ideal),
        )
        return list(ideal)

    async def _copy(
        self, entry: Entry, healthy: list[str], targets: tuple[str, ...], pace: Pace
    ) -> tuple[str, ...] | None:
        """Copy ``entry``'s object from ``healthy`` onto ``targets``; return the targets
        that hold it whole and verified (None: none, or the copy did not match).
        """
        key = entry.object_key
        assert key is not None
        try:
            written = await self.backend.replicate(
                ObjectRef(self.backend.name, key, tuple(healthy)), targets, pace=pace
            )
        except CallFSError as exc:
            logger.warning("repairer: could not copy %s: %s", entry.path, exc.message)
            return None
        if (written.sha256, written.size) != (entry.etag, entry.size):
            logger.error(
                "repairer: the copy of %s from %s does not match its SHA-256; dropped",
                entry.path,
                ", ".join(healthy),
            )
            await self._drop(ObjectRef(self.backend.name, key, written.replicas))
            return None
        return written.replicas

    async def _record(self, entry: Entry, replicas: list[str], copies: tuple[str, ...]) -> bool:
        """Record ``replicas`` while the file still holds its object; else drop ``copies``."""
        key = entry.object_key
        assert key is not None
        if await self.store.set_replicas(entry.path, key, replicas):
            return True
        # Replaced or deleted meanwhile: the copies are nobody's.
        await self._drop(ObjectRef(self.backend.name, key, copies))
        return False

    async def _drop(self, copies: ObjectRef) -> None:
        try:
            await self.backend.delete(copies)
        except CallFSError as exc:
            logger.warning("repairer: copies of %s left to the reconciler: %s", copies.key, exc)


def for_runtime(runtime: Runtime) -> Repairer:
    """A repairer over the runtime's store and storage nodes, with its settings."""
    backend = runtime.nodes
    replication = runtime.settings.replication
    return Repairer(
        runtime.store,
        backend,
        repair_after=replication.repair_after,
        rate=replication.repair_rate,
        rebalance=replication.rebalance,
        metrics=runtime.metrics,
    )


@contextlib.asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[None]:
    """Run the repairer in the background for the duration of the block (not at all
    when ``replication.repair_interval`` is 0).
    """
    repairer = for_runtime(runtime)

    async def attempt() -> Result:
        return await repairer.run_exclusive(runtime.locks)

    async with passes.running("repairer", runtime.settings.replication.repair_interval, attempt):
        yield
