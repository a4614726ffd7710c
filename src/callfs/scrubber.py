"""The scrubber: reads every replica of every local-volume file and heals those gone bad.

Storage nodes check each block against its checksum as they read it, so a read never
serves a flipped byte and heals the replica it met one on; but a replica nobody reads
can rot unseen until its file has no whole copy left. One pass, on one gateway replica
at a time (a coordination lock, as for the repairer):

1. walks the local-volume files of the namespace in path order, a page at a time;
2. reads each replica from its own node, at most ``replication.scrub_rate`` bytes a
   second, and compares its SHA-256 with the file's ETag (a storage-node file's ETag is
   its SHA-256). A replica whose bytes differ, or whose node finds a block that fails
   its checksum, is corrupted;
3. copies the object from the replicas that matched over the corrupted ones, under the
   same key (a node replaces an object atomically), checking the bytes against the ETag
   before the nodes commit them. With no replica that matched, the corrupted ones stay
   as they are and an ERROR says so.

A node that does not answer is skipped for the rest of the pass; a replica its node
does not hold is the repairer's business. Files written since the pass began wait for
the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime

from callfs import passes
from callfs.backends.base import ObjectRef, close_stream
from callfs.backends.storage_node import StorageNodeBackend
from callfs.coordination.base import Locks
from callfs.entry import Entry, utcnow
from callfs.errors import CallFSError, NodeUnreachable, NotFound, ReplicaCorrupted
from callfs.metadata.base import MetadataStore
from callfs.metrics import Metrics
from callfs.passes import Result
from callfs.repairer import Clock, Pace, Sleep
from callfs.runtime import Runtime

logger = logging.getLogger(__name__)

LOCK_KEY = "scrubber:pass"
"""The coordination lock a pass holds (path locks are ``path:/...``, so never this)."""


@dataclass
class ScrubReport:
    """What one pass found and did."""

    checked: int = 0
    """Files read (those written since the pass began left out)."""
    replicas: int = 0
    """Replicas read whole that matched their file."""
    corrupted: list[tuple[str, str]] = field(default_factory=list)
    """``(path, instance_id)`` of every replica found corrupted."""
    healed: list[tuple[str, str]] = field(default_factory=list)
    """The corrupted replicas the pass copied whole bytes over."""
    skipped: list[str] = field(default_factory=list)
    """Nodes that did not answer (or that discovery does not name), left for the next pass."""

    @property
    def result(self) -> Result:
        """``ok`` (every replica read, every corrupted one healed) or ``partial``."""
        healed = len(self.healed) == len(self.corrupted)
        return "ok" if healed and not self.skipped else "partial"


class Scrubber:
    """Checks the replicas of the files of ``store`` on ``backend``'s nodes against
    their SHA-256, and heals the corrupted ones from those that match.
    """

    def __init__(
        self,
        store: MetadataStore,
        backend: StorageNodeBackend,
        *,
        rate: float,
        metrics: Metrics | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        wall: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.backend = backend
        self.rate = rate
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self.wall = wall

    async def run_exclusive(self, locks: Locks) -> Result:
        """Run a pass unless another replica holds the scrub lock; count the result.

        Never raises: a failure is logged and reported as ``failed``.
        """
        runs = self.metrics.scrub_runs if self.metrics is not None else None
        return await passes.exclusive(locks, LOCK_KEY, "scrubber", self.run_pass, runs)

    async def run_pass(self) -> ScrubReport:
        """Read every replica of every local-volume file once; heal the corrupted ones.

        Raises:
            BackendUnavailable: the metadata store does not answer.
        """
        report = ScrubReport()
        began = self.wall() - passes.RECENT
        known = {i for i in self.backend.instances() if i is not None}
        pace = Pace(self.rate, clock=self.clock, sleep=self.sleep)
        async for entry in passes.stored_files(self.store, self.backend.name):
            if entry.ctime > began:
                continue
            report.checked += 1
            await self._scrub(entry, known, pace, report)
        if report.corrupted or report.skipped:
            logger.info(
                "scrubber: %d files checked, %d corrupted replicas found, %d healed; "
                "nodes skipped: %s",
                report.checked,
                len(report.corrupted),
                len(report.healed),
                ", ".join(report.skipped) or "none",
            )
        return report

    async def _scrub(self, entry: Entry, known: set[str], pace: Pace, report: ScrubReport) -> None:
        """Read each replica of ``entry``; heal those found corrupted."""
        whole: list[str] = []
        corrupted: list[str] = []
        unread = False
        for instance_id in entry.holders:
            if instance_id not in known and instance_id not in report.skipped:
                report.skipped.append(instance_id)
            if instance_id in report.skipped:
                unread = True
                continue
            matches = await self._verify(entry, instance_id, pace, report)
            if matches is None:
                unread = True
            elif matches:
                whole.append(instance_id)
                report.replicas += 1
            else:
                corrupted.append(instance_id)
                report.corrupted.append((entry.path, instance_id))
                if self.metrics is not None:
                    self.metrics.scrub_mismatches.labels("scrub").inc()
        if not corrupted:
            return
        if whole:
            await self._heal(entry, whole, corrupted, pace, report)
        elif unread:
            logger.warning(
                "scrubber: %s has no replica that matched this pass (others unread); "
                "left for the next pass",
                entry.path,
            )
        else:
            logger.error(
                "scrubber: no replica of %s matches its SHA-256 (corrupted on %s); left as is",
                entry.path,
                ", ".join(corrupted),
            )

    async def _verify(
        self, entry: Entry, instance_id: str, pace: Pace, report: ScrubReport
    ) -> bool | None:
        """Whether the replica on ``instance_id`` holds the file's bytes; None when it
        could not be read (the node did not answer, or does not hold the object).
        """
        key = entry.object_key
        assert key is not None
        try:
            stream = await self.backend.read(ObjectRef(self.backend.name, key, (instance_id,)))
            digest = await self._digest(stream, pace)
        except ReplicaCorrupted as exc:
            logger.warning(
                "scrubber: replica %s of %s is corrupted: %s", instance_id, entry.path, exc.message
            )
            return False
        except NotFound:
            return None
        except NodeUnreachable as exc:
            logger.info("scrubber: node %s skipped this pass: %s", instance_id, exc.message)
            report.skipped.append(instance_id)
            return None
        except CallFSError as exc:
            logger.warning(
                "scrubber: could not read replica %s of %s: %s",
                instance_id,
                entry.path,
                exc.message,
            )
            return None
        if digest != entry.etag:
            logger.warning(
                "scrubber: replica %s of %s is corrupted: its SHA-256 is %s, not %s",
                instance_id,
                entry.path,
                digest,
                entry.etag,
            )
            return False
        return True

    async def _digest(self, stream: AsyncIterator[bytes], pace: Pace) -> str:
        """The SHA-256 of ``stream``, read at the pace; the stream is closed after."""
        digest = hashlib.sha256()
        try:
            async for chunk in stream:
                digest.update(chunk)
                if self.metrics is not None:
                    self.metrics.scrub_bytes.inc(len(chunk))
                await pace(len(chunk))
        finally:
            await close_stream(stream)
        return digest.hexdigest()

    async def _heal(
        self,
        entry: Entry,
        whole: list[str],
        corrupted: list[str],
        pace: Pace,
        report: ScrubReport,
    ) -> None:
        """Copy ``entry``'s object from the ``whole`` replicas over the ``corrupted`` ones."""
        key = entry.object_key
        assert key is not None
        source = ObjectRef(self.backend.name, key, tuple(whole), etag=entry.etag)
        try:
            written = await self.backend.replicate(source, corrupted, pace=pace)
        except CallFSError as exc:
            logger.warning(
                "scrubber: could not heal %s on %s: %s",
                entry.path,
                ", ".join(corrupted),
                exc.message,
            )
            return
        if (written.sha256, written.size) != (entry.etag, entry.size):
            # replicate checks the bytes before the nodes commit them: never expected.
            logger.error(
                "scrubber: the copy of %s onto %s does not match its SHA-256",
                entry.path,
                ", ".join(written.replicas),
            )
            return
        healed = [i for i in corrupted if i in written.replicas]
        report.healed.extend((entry.path, i) for i in healed)
        if self.metrics is not None:
            self.metrics.repaired_objects.inc(len(healed))
            self.metrics.repaired_bytes.inc(written.size * len(healed))
        logger.info(
            "scrubber: healed %s on %s from %s", entry.path, ", ".join(healed), ", ".join(whole)
        )


def for_runtime(runtime: Runtime) -> Scrubber:
    """A scrubber over the runtime's store and storage nodes, with its settings."""
    backend = runtime.nodes
    return Scrubber(
        runtime.store,
        backend,
        rate=runtime.settings.replication.scrub_rate,
        metrics=runtime.metrics,
    )


@contextlib.asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[None]:
    """Run the scrubber in the background for the duration of the block (not at all
    when ``replication.scrub_interval`` is 0).
    """
    scrubber = for_runtime(runtime)

    async def attempt() -> Result:
        return await scrubber.run_exclusive(runtime.locks)

    async with passes.running("scrubber", runtime.settings.replication.scrub_interval, attempt):
        yield
