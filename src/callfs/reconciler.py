"""The reconciler: removes stored objects that no metadata row points to.

A write stores its bytes before it commits its row, and a delete removes the row
before the bytes, so a crash, a node that stopped answering or a failed cleanup
can leave an object nothing points to. One pass visits every node of every
backend and, object by object as the node streams its listing:

- leaves alone keys of another shape than CallFS gives (``is_object_key``): a
  bucket or volume may hold other things;
- leaves alone objects written less than ``grace`` ago: they may be uploads whose
  row is not committed yet;
- leaves alone keys in the node's snapshot of referenced keys (``object_keys``);
- asks the store once more right before deleting (``referenced_keys``), so a key
  committed since the snapshot survives.

A node that does not answer is skipped until the next pass. Each gateway replica
tries a pass every ``reconciler.interval``; a lock through the coordination
adapter lets one replica at a time run one, and the others skip theirs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from callfs import passes
from callfs.backends.base import Backend, ObjectRef, is_object_key
from callfs.coordination.base import Locks
from callfs.errors import CallFSError
from callfs.metadata.base import MetadataStore
from callfs.metrics import Metrics
from callfs.passes import Result
from callfs.runtime import Runtime

logger = logging.getLogger(__name__)

LOCK_KEY = "reconciler:pass"
"""The coordination lock a pass holds (path locks are ``path:/...``, so never this)."""
BATCH = 500


@dataclass
class PassReport:
    """What one pass did: objects removed per place, and the places it skipped."""

    removed: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def result(self) -> Result:
        """``ok`` (every place reconciled), ``partial`` (some skipped) or ``failed`` (all)."""
        if not self.skipped:
            return "ok"
        return "partial" if self.removed else "failed"


def place(backend: Backend, instance_id: str | None) -> str:
    """A place's name in logs and reports: ``localfs/node-0``, ``s3``."""
    return backend.name if instance_id is None else f"{backend.name}/{instance_id}"


class Reconciler:
    """Finds and removes the orphaned objects of ``backends`` against ``store``."""

    def __init__(
        self,
        store: MetadataStore,
        backends: Mapping[str, Backend],
        *,
        grace: float,
        metrics: Metrics | None = None,
        batch: int = BATCH,
    ) -> None:
        self.store = store
        self.backends = backends
        self.grace = grace
        self.metrics = metrics
        self.batch = max(1, batch)

    async def run_exclusive(self, locks: Locks) -> Result:
        """Run a pass unless another replica holds the reconciler lock; count the result.

        Never raises: a failure is logged and reported as ``failed``.
        """
        runs = self.metrics.reconciler_runs if self.metrics is not None else None
        return await passes.exclusive(locks, LOCK_KEY, "reconciler", self.run_pass, runs)

    async def run_pass(self, *, now: datetime | None = None) -> PassReport:
        """Reconcile every node of every backend once; a place that fails (a node that
        is down, say) is logged and skipped, and the pass goes on with the others.

        ``now`` (default: the current time) dates the grace period.
        """
        report = PassReport()
        moment = now or datetime.now(UTC)
        for backend in self.backends.values():
            for instance_id in backend.instances():
                where = place(backend, instance_id)
                try:
                    report.removed[where] = await self.reconcile(backend, instance_id, now=moment)
                except CallFSError as exc:
                    logger.warning("reconciler: skipping %s this pass: %s", where, exc.message)
                    report.skipped.append(where)
                except Exception:
                    logger.exception("reconciler: skipping %s this pass after an error", where)
                    report.skipped.append(where)
        return report

    async def reconcile(self, backend: Backend, instance_id: str | None, *, now: datetime) -> int:
        """Remove the orphans of one place; return how many went.

        Raises:
            BackendUnavailable: the node, S3 or the metadata store does not answer.
        """
        removed = 0
        async for keys in self.orphans(backend, instance_id, now=now):
            removed += await self.remove(backend, instance_id, keys)
        if removed:
            logger.info(
                "reconciler removed %d orphaned objects from %s",
                removed,
                place(backend, instance_id),
            )
        return removed

    async def orphans(
        self, backend: Backend, instance_id: str | None, *, now: datetime
    ) -> AsyncIterator[list[str]]:
        """The keys of one place that look orphaned, in batches: CallFS-shaped, older
        than the grace at ``now``, and not referenced when the pass looked.

        Raises:
            BackendUnavailable: the node, S3 or the metadata store does not answer.
        """
        cutoff = now - timedelta(seconds=self.grace)
        referenced = await self.store.object_keys(backend.name, instance_id)
        batch: list[str] = []
        async for stored in backend.list_objects(instance_id):
            if stored.modified > cutoff or stored.key in referenced:
                continue
            if not is_object_key(stored.key):
                continue
            batch.append(stored.key)
            if len(batch) >= self.batch:
                yield batch
                batch = []
        if batch:
            yield batch

    async def remove(self, backend: Backend, instance_id: str | None, keys: list[str]) -> int:
        """Delete those of ``keys`` no row points to now; return how many went.

        Raises:
            BackendUnavailable: the node, S3 or the metadata store does not answer.
        """
        kept = await self.store.referenced_keys(backend.name, instance_id, keys)
        going = [ObjectRef(backend.name, key, _on(instance_id)) for key in keys if key not in kept]
        failed = await backend.delete_many(going)
        if failed:
            # The node or S3 is failing: skip the place this pass, as a failed listing does.
            raise failed[0][1]
        for ref in going:
            logger.debug("reconciler removed %s from %s", ref.key, place(backend, instance_id))
        if self.metrics is not None and going:
            self.metrics.reconciler_orphans_removed.labels(backend.name).inc(len(going))
        return len(going)


def for_runtime(runtime: Runtime) -> Reconciler:
    """A reconciler over the runtime's store and backends, with its settings and metrics."""
    return Reconciler(
        runtime.store,
        runtime.backends,
        grace=runtime.settings.reconciler.grace,
        metrics=runtime.metrics,
    )


@contextlib.asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[None]:
    """Run the reconciler in the background for the duration of the block (not at all
    when ``reconciler.interval`` is 0).
    """
    reconciler = for_runtime(runtime)

    async def attempt() -> Result:
        return await reconciler.run_exclusive(runtime.locks)

    async with passes.running("reconciler", runtime.settings.reconciler.interval, attempt):
        yield


def _on(instance_id: str | None) -> tuple[str, ...]:
    """The one node an orphan is removed from (none for a backend without nodes)."""
    return () if instance_id is None else (instance_id,)
