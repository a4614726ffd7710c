"""Entry of ``make bench``: start the servers, measure them, print the table, save results.

Knobs (environment):

- ``CALLFS_BENCH_SIZE_MIB`` — size of the big transfer (default 1024, the 1 GiB of the targets)
- ``CALLFS_BENCH_SECONDS`` — length of each measured wrk run (default 10)
- ``CALLFS_BENCH_CONNECTIONS`` — wrk connections (default 32); ``CALLFS_BENCH_THREADS`` (default 2)
- ``CALLFS_BENCH_WIDE_CONNECTIONS`` — wrk connections of the wide 4 KiB GET row (default 256)
- ``CALLFS_BENCH_REPEAT`` — big transfers per server, the fastest counts (default 2)
- ``CALLFS_BENCH_PROFILE=1`` — afterwards, record py-spy profiles of CallFS during one more
  run of each measurement and print where the time goes
- ``CALLFS_BENCH_NAMESPACE_FILES`` — files of the namespace section's one big directory
  (default 20000; the issue's figure, for a recorded run, is 100000)
- ``CALLFS_BENCH_ONLY`` — run only these sections, comma-separated, of ``files`` (``callfs
  dev`` against nginx and the SeaweedFS filer; its 4 KiB rates once more with files of up
  to 4 KiB kept in the metadata store), ``s3`` (CallFS on S3 against SeaweedFS's S3
  gateway), ``namespace`` (one directory of many 16-byte files on ``callfs dev``, with and
  without small files kept in its metadata store, the SeaweedFS filer and the local
  cluster: create, list, rename, delete, disk per file) and ``cluster`` (the local
  multi-process cluster at R=1 and R=2, next to ``callfs dev``; its 4 KiB rates at R=2
  through both doors); default all
- ``CALLFS_BENCH_CLUSTER_VOLUMES`` — where the cluster section keeps the local cluster,
  comma-separated, of ``disk`` (the scratch folder: all of the above) and ``ram`` (a
  folder in ``/dev/shm``: the big transfers alone again, as ``cluster_ram_r1_*`` and
  ``cluster_ram_r2_*``, without ``callfs dev``); default both. On one machine the three
  storage nodes' volumes share one disk, so an R=2 upload writes twice the bytes to it
  and the disk, not the design, sets R=2/R=1; in production each node has a volume of
  its own. In RAM no disk is shared, so that R=2/R=1 upload shows the replication
  design's own cost, and it is held to the 0.7x target as well. The RAM runs are
  skipped, the reason logged and kept in results.json, when ``/dev/shm`` is missing or
  it (or the available memory) has room for less than RAM_ROOM_TRANSFERS big transfers
- ``CALLFS_BENCH_OUT`` — where results.json and the profiles go (default ``.callfs-bench``)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import load
from benchmarks.load import Batch, Concurrency, Rate, Transfer
from benchmarks.namespace import (
    UNPAGED_LIMIT,
    CallFSNamespace,
    FilerNamespace,
    Namespace,
    Poller,
    disk_usage,
    file_count,
    median_ms,
    probe_summary,
    timed,
)
from benchmarks.procwatch import ProcessWatch, rss_bytes
from benchmarks.profiling import Profile, Recording
from benchmarks.report import MIB, Row, Target, markdown, table
from benchmarks.servers import CallFSDev, Endpoint, Nginx, Seaweed
from callfs.settings import ReplicationSettings
from tools import cluster

logger = logging.getLogger("benchmarks")

BIG_PATH = "bench/big.bin"
PROFILED_PATH = "bench/profiled.bin"
SMALL_PATH = "bench/small.bin"
MEDIUM_PATH = "bench/medium.bin"
PUT_FOLDER = "bench/put"
CALLFS_BUCKET = "callfs"
DIRECT_BUCKET = "direct"
SECTIONS = ("files", "s3", "namespace", "cluster")
CLUSTER_FACTORS = (1, 2)
# Where the cluster section can keep the cluster: the scratch folder, or RAM_FOLDER (tmpfs).
CLUSTER_VOLUMES = ("disk", "ram")
RAM_FOLDER = Path("/dev/shm")
# Room the cluster needs in RAM, in big transfers: while an upload replaces the big file,
# each of R=2 replicas holds the old copy and the new temp file (4), plus one of slack.
RAM_ROOM_TRANSFERS = 2 * max(CLUSTER_FACTORS) + 1
# Measurement prefixes of the cluster's runs, by where its volumes are (then ``r{R}_``).
CLUSTER_PLACEMENTS = {"disk": "cluster_", "ram": "cluster_ram_"}
# The replication factors at which the cluster's 4 KiB GET and PUT rates are measured.
CLUSTER_RATE_FACTORS = (2,)
CLUSTER_GATEWAY = "gateway-1"
# The cluster's processes whose CPU time is kept per measurement (each is a process group).
CLUSTER_PROCESSES = (*cluster.GATEWAYS, *cluster.NODES, "nginx", "postgres")
# Those that are CallFS and on a file request's path: their CPU is CallFS's CPU per request.
CLUSTER_CALLFS = (*cluster.GATEWAYS, *cluster.NODES)
# The namespace section: ``namespace_files`` (CALLFS_BENCH_NAMESPACE_FILES) files of
# NAMESPACE_FILE_BYTES in NAMESPACE_DIR, created by wrk in batches of NAMESPACE_BATCH over
# NAMESPACE_CONNECTIONS connections.
NAMESPACE_DIR = "ns/big"
# Before the fill, unmeasured: a few creates in a folder of their own (SeaweedFS grows
# its volumes on the first writes under load, and fails some of them meanwhile).
NAMESPACE_WARM_UP_DIR = "ns/warm"
NAMESPACE_WARM_UP_FILES = 500
NAMESPACE_RENAMED = "big2"
NAMESPACE_FILE_BYTES = 16
NAMESPACE_BATCH = 10_000
NAMESPACE_CONNECTIONS = 16
NAMESPACE_PAGE = 1000
NAMESPACE_SMALL_DIR = "ns/small"
NAMESPACE_SMALL_FILES = 3
NAMESPACE_CACHED = "ns/cached.bin"
# The name the local cluster's namespace figures are recorded under.
NAMESPACE_CLUSTER = "CallFS cluster"
# callfs dev again with small files kept in the metadata store (backend.inline_max_bytes,
# off by default): the 4 KiB rates and the namespace steps once more, that setting on.
NAMESPACE_INLINE = "CallFS inline"
INLINE_WHERE = ", small files in the metadata store"
INLINE_PREFIX = "inline_"
FIRST_PAGE_RUNS = 5
SMALL_LISTING_RUNS = 50
PROBE_IDLE_SECONDS = 1.0
RECLAIM_TIMEOUT = 600.0
RECLAIM_POLL = 0.05


@dataclass(frozen=True)
class RateSpec:
    """One wrk measurement: its key in the results, GET or PUT, body size, connections."""

    key: str
    method: str
    size: int
    connections: int

    @property
    def label(self) -> str:
        """``4 KiB GET, 32 conns``."""
        return f"{_bytes_label(self.size)} {self.method.upper()}, {self.connections} conns"


@dataclass(frozen=True)
class Knobs:
    """What one run measures, read from ``CALLFS_BENCH_*`` variables."""

    size_mib: int = 1024
    seconds: float = 10.0
    connections: int = 32
    wide_connections: int = 256
    threads: int = 2
    repeat: int = 2
    small_bytes: int = 4096
    medium_bytes: int = 64 * 1024
    namespace_files: int = 20_000
    profile: bool = False
    out: Path = Path(".callfs-bench")
    only: tuple[str, ...] = SECTIONS
    cluster_volumes: tuple[str, ...] = CLUSTER_VOLUMES

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> Knobs:
        """The knobs, defaults where a variable is unset.

        Raises:
            SystemExit: a variable is not a positive number.
        """
        try:
            knobs = cls(
                size_mib=int(environ.get("CALLFS_BENCH_SIZE_MIB", cls.size_mib)),
                seconds=float(environ.get("CALLFS_BENCH_SECONDS", cls.seconds)),
                connections=int(environ.get("CALLFS_BENCH_CONNECTIONS", cls.connections)),
                wide_connections=int(
                    environ.get("CALLFS_BENCH_WIDE_CONNECTIONS", cls.wide_connections)
                ),
                threads=int(environ.get("CALLFS_BENCH_THREADS", cls.threads)),
                repeat=int(environ.get("CALLFS_BENCH_REPEAT", cls.repeat)),
                namespace_files=int(
                    environ.get("CALLFS_BENCH_NAMESPACE_FILES", cls.namespace_files)
                ),
                profile=environ.get("CALLFS_BENCH_PROFILE", "") not in ("", "0", "false"),
                out=Path(environ.get("CALLFS_BENCH_OUT", str(cls.out))),
                only=_names("CALLFS_BENCH_ONLY", environ.get("CALLFS_BENCH_ONLY", ""), SECTIONS),
                cluster_volumes=_names(
                    "CALLFS_BENCH_CLUSTER_VOLUMES",
                    environ.get("CALLFS_BENCH_CLUSTER_VOLUMES", ""),
                    CLUSTER_VOLUMES,
                ),
            )
        except ValueError as exc:
            raise SystemExit(f"benchmarks: bad CALLFS_BENCH_* value: {exc}") from None
        values = (knobs.size_mib, knobs.seconds, knobs.connections, knobs.wide_connections)
        if min(*values, knobs.threads, knobs.repeat, knobs.namespace_files) <= 0:
            raise SystemExit("benchmarks: CALLFS_BENCH_* values must be positive")
        return knobs

    def runs(self, *sections: str) -> bool:
        """Whether any of ``sections`` is measured in this run."""
        return any(section in self.only for section in sections)

    @property
    def tools(self) -> tuple[str, ...]:
        """The client programs the chosen sections need (wrk only for the small requests)."""
        return ("curl", "wrk") if self.runs("files", "namespace", "cluster") else ("curl",)

    @property
    def size(self) -> int:
        """The big transfer's size in bytes."""
        return self.size_mib * MIB

    @property
    def size_label(self) -> str:
        """``1 GiB`` or ``256 MiB``."""
        return (
            f"{self.size_mib // 1024} GiB" if self.size_mib % 1024 == 0 else f"{self.size_mib} MiB"
        )

    @property
    def concurrency(self) -> Concurrency:
        """How hard wrk pushes."""
        return Concurrency(self.connections, self.threads, self.seconds)

    @property
    def small_rates(self) -> tuple[RateSpec, ...]:
        """4 KiB GET and PUT: the rate rows measured everywhere, the local cluster too."""
        return (
            RateSpec("get", "get", self.small_bytes, self.connections),
            RateSpec("put", "put", self.small_bytes, self.connections),
        )

    @property
    def rates(self) -> tuple[RateSpec, ...]:
        """Every rate row of the files section: 4 KiB and 64 KiB GET and PUT, then
        4 KiB GET over ``wide_connections``.
        """
        return (
            *self.small_rates,
            RateSpec("get_64k", "get", self.medium_bytes, self.connections),
            RateSpec("put_64k", "put", self.medium_bytes, self.connections),
            RateSpec("get_wide", "get", self.small_bytes, self.wide_connections),
        )


@dataclass
class Measured:
    """Everything one run measured, by measurement and then by server."""

    throughput: dict[str, dict[str, float]] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, measurement: str, server: str, value: float) -> None:
        """Keep ``value`` as ``server``'s figure for ``measurement``."""
        self.throughput.setdefault(measurement, {})[server] = value

    def get(self, measurement: str, server: str) -> float | None:
        """``server``'s figure for ``measurement``, None if not measured."""
        return self.throughput.get(measurement, {}).get(server)


class Bench:
    """One benchmark run in a scratch folder: servers up, measurements, servers down."""

    def __init__(self, knobs: Knobs, scratch: Path) -> None:
        self.knobs = knobs
        self.scratch = scratch
        self.source = scratch / "big.bin"
        self.small = scratch / "small.bin"
        self.medium = scratch / "medium.bin"
        self.measured = Measured()

    def run(self) -> Measured:
        """Start every server, measure, stop every server (also on failure)."""
        if self.knobs.runs("files", "s3", "cluster"):
            logger.info("writing a %s file of random bytes", self.knobs.size_label)
            _random_file(self.source, self.knobs.size)
        self.small.write_bytes(os.urandom(self.knobs.small_bytes))
        self.medium.write_bytes(os.urandom(self.knobs.medium_bytes))
        with contextlib.ExitStack() as stack:
            if self.knobs.runs("files", "s3"):
                weed = Seaweed(self.scratch / "seaweedfs")
                stack.callback(weed.stop)
                logger.info("starting SeaweedFS (weed server -filer -s3)")
                weed.start()
                for bucket in (CALLFS_BUCKET, DIRECT_BUCKET):
                    weed.create_bucket(bucket)

            if self.knobs.runs("files"):
                nginx = Nginx(self.scratch / "nginx")
                stack.callback(nginx.stop)
                callfs = CallFSDev(self.scratch / "callfs")
                stack.callback(callfs.stop)
                logger.info("starting nginx and callfs dev")
                peers = [nginx.start(), weed.filer()]
                ours = callfs.start()
                self.files(ours, callfs.pid, peers)
                if self.knobs.profile:
                    self.profile(ours, callfs.pid, "localfs")
                callfs.stop()
                nginx.stop()
                self.inline_rates(stack)

            if self.knobs.runs("s3"):
                callfs_s3 = CallFSDev(self.scratch / "callfs-s3", _s3_environment(weed))
                stack.callback(callfs_s3.stop)
                ours_s3 = callfs_s3.start()
                self.s3(ours_s3, callfs_s3.pid, weed.s3(DIRECT_BUCKET))
                if self.knobs.profile:
                    self.profile(ours_s3, callfs_s3.pid, "s3")
                callfs_s3.stop()

            if self.knobs.runs("files", "s3"):
                weed.stop()  # the sections below get the machine to themselves
            if self.knobs.runs("namespace"):
                self.namespace(stack)
            if self.knobs.runs("cluster"):
                self.local_cluster(stack)
        return self.measured

    def files(self, ours: Endpoint, pid: int, peers: list[Endpoint]) -> None:
        """The file rows: big upload and download, GET and PUT rates, CallFS's RSS and CPU."""
        self.transfers(ours, pid, "rss")
        for peer in peers:
            self.transfers(peer, None, None)
        for endpoint in (ours, *peers):
            self.rates([endpoint], self.knobs.rates, pid if endpoint is ours else None)

    def inline_rates(self, stack: contextlib.ExitStack) -> None:
        """The 4 KiB rates again on a fresh ``callfs dev`` that keeps files of up to 4 KiB
        in its metadata store (keys prefixed INLINE_PREFIX), beside the peers' figures.
        """
        callfs = CallFSDev(self.scratch / "callfs-inline", self._inline_environment())
        stack.callback(callfs.stop)
        logger.info("starting callfs dev, small files in the metadata store")
        ours = callfs.start()
        self.rates([ours], self.knobs.small_rates, callfs.pid, prefix=INLINE_PREFIX)
        callfs.stop()

    def _inline_environment(self) -> dict[str, str]:
        return {"CALLFS_BACKEND_INLINE_MAX_BYTES": str(self.knobs.small_bytes)}

    def rates(
        self,
        endpoints: Sequence[Endpoint],
        specs: Sequence[RateSpec],
        pid: int | None,
        *,
        prefix: str = "",
        groups: Mapping[str, int] | None = None,
    ) -> None:
        """The wrk rates of ``specs``, each after a short warm-up, spread over ``endpoints``
        (several: one wrk each, side by side); CallFS's CPU meanwhile if ``pid`` is given
        (and the CPU time of the process ``groups``, name -> process group id).
        """
        files = {self.knobs.small_bytes: self.small, self.knobs.medium_bytes: self.medium}
        for size in sorted({spec.size for spec in specs if spec.method == "get"}):
            load.put_small(endpoints[0], _get_path(self.knobs, size), files[size], self.scratch)
        for spec in specs:
            logger.info("%s: %s with wrk", endpoints[0].name, spec.label)
            self._wrk(endpoints, spec, self.knobs.concurrency.warm_up_seconds)
            with _watch(pid, groups) as watch:
                rate = self._wrk(endpoints, spec, self.knobs.seconds)
            self.rate(prefix + spec.key, endpoints[0], rate, watch)

    def _wrk(self, endpoints: Sequence[Endpoint], spec: RateSpec, seconds: float) -> Rate:
        """One wrk run of ``spec`` for ``seconds``; a PUT names files never used before."""
        concurrency = self.knobs.concurrency.with_connections(spec.connections)
        if spec.method == "get":
            path = _get_path(self.knobs, spec.size)
            return load.get_rate(endpoints, path, concurrency, seconds)
        return load.put_rate(endpoints, PUT_FOLDER, spec.size, concurrency, seconds, self.scratch)

    def s3(self, ours: Endpoint, pid: int, direct: Endpoint) -> None:
        """The S3 rows: CallFS on its S3 backend against SeaweedFS's S3 gateway."""
        self.transfers(ours, pid, "s3_rss", prefix="s3_")
        self.transfers(direct, None, None, prefix="s3_", as_name="SeaweedFS")

    def namespace(self, stack: contextlib.ExitStack) -> None:
        """The namespace rows: ``callfs dev``, then a fresh SeaweedFS filer, each alone on
        the machine, through the same steps (:meth:`_namespace`).
        """
        callfs = CallFSDev(self.scratch / "callfs-ns")
        stack.callback(callfs.stop)
        logger.info("starting callfs dev (namespace)")
        ours = callfs.start()
        data = callfs.workdir / "data"
        api: Namespace = CallFSNamespace(ours, ours.base.removesuffix("/v1/files"), data)
        try:
            self._namespace(api, callfs.pid, data / "volumes")
        finally:
            api.http.close()
            callfs.stop()
        weed = Seaweed(self.scratch / "seaweedfs-ns")
        stack.callback(weed.stop)
        logger.info("starting SeaweedFS (namespace)")
        weed.start()
        filer = weed.filer()
        api = FilerNamespace(filer, filer.base, weed.workdir / "data")
        try:
            self._namespace(api, None, None)
        finally:
            api.http.close()
            weed.stop()
        self._namespace_inline(stack)
        self._namespace_on_cluster(stack)

    def _namespace_inline(self, stack: contextlib.ExitStack) -> None:
        """The same steps on ``callfs dev`` keeping small files in its metadata store."""
        callfs = CallFSDev(self.scratch / "callfs-ns-inline", self._inline_environment())
        stack.callback(callfs.stop)
        logger.info("starting callfs dev (namespace, small files in the metadata store)")
        ours = dataclasses.replace(callfs.start(), name=NAMESPACE_INLINE)
        data = callfs.workdir / "data"
        api = CallFSNamespace(ours, ours.base.removesuffix("/v1/files"), data)
        try:
            self._namespace(api, callfs.pid, data / "volumes")
        finally:
            api.http.close()
            callfs.stop()

    def _namespace_on_cluster(self, stack: contextlib.ExitStack) -> None:
        """The same steps on the local cluster (PostgreSQL metadata, three storage nodes
        at its default replication) through door 1, gateway-1 watched; its disk row
        counts the storage nodes' volumes alone (PostgreSQL preallocates its WAL).
        """
        root = self.scratch / "cluster-ns"
        self.scratch.chmod(0o755)  # for PostgreSQL's unprivileged user
        stack.callback(cluster.down, root)  # safe to call twice
        logger.info("starting the local cluster (namespace)")
        # The local cluster repairs every few seconds, for its fault tests. Here its
        # gateways keep the production default, or gateway-1's repairer would walk the
        # whole namespace (and list every node's objects) every few seconds while it is
        # measured: at 100,000 files that held a third of its core and more than doubled
        # the rename and the paged listing.
        repair = ReplicationSettings().repair_interval
        environ = dict(os.environ) | {"CALLFS_REPLICATION_REPAIR_INTERVAL": f"{repair:g}s"}
        handle = cluster.up(root, environ, watch_pid=os.getpid())
        try:
            auth = ("-H", f"Authorization: Bearer {handle.api_keys[0]}")
            door = Endpoint(NAMESPACE_CLUSTER, handle.url + "/v1/files", auth)
            volumes = root / "volumes"
            api = CallFSNamespace(door, handle.url, volumes)
            try:
                self._namespace(api, _cluster_pids(root)[CLUSTER_GATEWAY], volumes)
            finally:
                api.http.close()
        finally:
            cluster.down(root)

    def _namespace(self, api: Namespace, pid: int | None, volumes: Path | None) -> None:
        """Fill one directory with ``namespace_files`` files of 16 bytes, then list it (in
        pages, whole, its first page), probe latency during whole listings, list a small
        directory beside it, rename it, delete it, and (``volumes``: CallFS's storage
        node folders) wait for its objects to go. ``pid`` (CallFS) is watched meanwhile.
        """
        files = self.knobs.namespace_files
        payload = b"x" * NAMESPACE_FILE_BYTES
        for index in range(NAMESPACE_SMALL_FILES):
            api.put(f"{NAMESPACE_SMALL_DIR}/f{index}", payload)
        api.put(NAMESPACE_CACHED, self.small.read_bytes())
        api.get(NAMESPACE_CACHED)  # now in the server's caches
        small = api.small_listing(NAMESPACE_SMALL_DIR)
        timed(api, small)
        self._small_listing("ns_small_before", api, small)
        self._create(api, NAMESPACE_WARM_UP_DIR, NAMESPACE_WARM_UP_FILES)
        api.make_directory(NAMESPACE_DIR)
        disk_before = disk_usage(api.data)
        objects_before = file_count(volumes) if volumes else 0

        self._fill(api, pid, files)
        disk_after = disk_usage(api.data)
        per_file = (disk_after[0] - disk_before[0]) / files
        self.measured.record("ns_disk", api.name, per_file)
        self.measured.diagnostics.setdefault("ns_disk", {})[api.name] = {
            "folder": str(api.data),
            "bytes_before": disk_before[0],
            "bytes_after": disk_after[0],
            "apparent_bytes_before": disk_before[1],
            "apparent_bytes_after": disk_after[1],
            "apparent_bytes_per_file": round((disk_after[1] - disk_before[1]) / files, 1),
        }
        logger.info("%s: %.0f bytes on disk per file", api.name, per_file)

        self._first_page(api)
        self._paged(api, files)
        self._unpaged(api, pid, files)
        self._probe(api)
        self._small_listing("ns_small_after", api, small)
        self._remove(api, objects_before, volumes)

    def _fill(self, api: Namespace, pid: int | None, files: int) -> None:
        """Create ``files`` files in NAMESPACE_DIR with wrk, NAMESPACE_BATCH at a time."""
        batches: list[Batch] = []
        with _watch(pid) as watch:
            for offset in range(0, files, NAMESPACE_BATCH):
                batch = self._create(api, NAMESPACE_DIR, min(NAMESPACE_BATCH, files - offset))
                batches.append(batch)
                logger.info(
                    "%s: created %d files (%d to %d) at %.0f/s, %d failed",
                    api.name,
                    batch.files,
                    offset + 1,
                    offset + batch.files,
                    batch.files_per_s,
                    batch.failed,
                )
        seconds = sum(batch.seconds for batch in batches)
        self.measured.record("ns_create", api.name, files / seconds)
        details: dict[str, Any] = {
            "files": files,
            "seconds": round(seconds, 3),
            "errors": sum(batch.failed for batch in batches),
            "batches": [
                {
                    "files": batch.files,
                    "seconds": round(batch.seconds, 3),
                    "files_per_s": round(batch.files_per_s, 1),
                    "failed": batch.failed,
                    "failed_status": batch.failed_status,
                }
                for batch in batches
            ],
        }
        if watch is not None:
            details["cpu_share"] = round(watch.cpu_share, 2)
            details["cpu_seconds"] = round(watch.cpu_seconds, 3)
            details["cpu_seconds_per_request"] = round(watch.cpu_seconds / files, 7)
        self.measured.diagnostics.setdefault("ns_create", {})[api.name] = details

    def _create(self, api: Namespace, folder: str, files: int) -> Batch:
        """Create ``files`` files of NAMESPACE_FILE_BYTES in ``folder`` with wrk."""
        return load.create_batch(
            api.endpoint,
            folder,
            files,
            method=api.create_method,
            status=api.create_status,
            size=NAMESPACE_FILE_BYTES,
            connections=NAMESPACE_CONNECTIONS,
            threads=self.knobs.threads,
            scratch=self.scratch,
        )

    def _first_page(self, api: Namespace) -> None:
        """The first page of NAMESPACE_PAGE entries, median of FIRST_PAGE_RUNS (ms)."""
        runs = []
        for _ in range(FIRST_PAGE_RUNS):
            start = time.perf_counter()
            api.page(NAMESPACE_DIR, NAMESPACE_PAGE, None)
            runs.append((time.perf_counter() - start) * 1000)
        self.measured.record("ns_first_page", api.name, statistics.median(runs))
        self.measured.diagnostics.setdefault("ns_first_page", {})[api.name] = {
            "ms": [round(run, 2) for run in runs]
        }

    def _paged(self, api: Namespace, files: int) -> None:
        """Every entry of NAMESPACE_DIR in pages of NAMESPACE_PAGE; best of ``repeat``."""
        runs = []
        for _ in range(self.knobs.repeat):
            start = time.perf_counter()
            entries, pages = api.list_all(NAMESPACE_DIR, NAMESPACE_PAGE)
            runs.append((time.perf_counter() - start, entries, pages))
        best = min(runs)
        self.measured.record("ns_list_paged", api.name, best[0])
        self.measured.diagnostics.setdefault("ns_list_paged", {})[api.name] = {
            "seconds": [round(seconds, 3) for seconds, _, _ in runs],
            "entries": [entries for _, entries, _ in runs],
            "pages": [pages for _, _, pages in runs],
            "errors": max(abs(entries - files) for _, entries, _ in runs),
        }
        logger.info("%s: listed %d entries in %d pages in %.2fs", api.name, *best[1:], best[0])

    def _unpaged(self, api: Namespace, pid: int | None, files: int) -> None:
        """Each unpaged listing form of NAMESPACE_DIR, best of ``repeat``, and CallFS's RSS
        growth over them (peak during them minus RSS before the first).
        """
        for form, target in api.unpaged(NAMESPACE_DIR).items():
            key = f"ns_unpaged_{form}"
            before = rss_bytes(pid) if pid is not None else 0
            runs = []
            with _watch(pid) as watch:
                for _ in range(self.knobs.repeat):
                    seconds, body = timed(api, target)
                    runs.append((seconds, api.count(form, body)))
                    del body
            self.measured.record(key, api.name, min(runs)[0])
            details: dict[str, Any] = {
                "target": target,
                "seconds": [round(seconds, 3) for seconds, _ in runs],
                "entries": [entries for _, entries in runs],
                "errors": max(abs(entries - min(files, UNPAGED_LIMIT)) for _, entries in runs),
            }
            if watch is not None:
                growth = (watch.peak_rss_bytes - before) / MIB
                self.measured.record(f"{key}_rss", api.name, growth)
                details["rss_before_mib"] = round(before / MIB, 1)
                details["peak_rss_mib"] = round(watch.peak_rss_bytes / MIB, 1)
                details["cpu_share"] = round(watch.cpu_share, 2)
            self.measured.diagnostics.setdefault(key, {})[api.name] = details
            logger.info(
                "%s: unpaged listing %s: %s s%s",
                api.name,
                target,
                details["seconds"],
                f", RSS +{growth:.1f} MiB" if watch is not None else "",
            )

    def _probe(self, api: Namespace) -> None:
        """GET ``/health`` (the filer's ``/healthz``) and a small cached file every 10 ms,
        each from a process of its own: idle for PROBE_IDLE_SECONDS, then while unpaged
        listings of NAMESPACE_DIR run back to back for ``seconds`` (at least one).
        """
        auth = api.http.headers
        pollers = {"ns_probe_cached": Poller(api.root + api.file_target(NAMESPACE_CACHED), auth)}
        if api.health_path:
            pollers["ns_probe_health"] = Poller(api.root + api.health_path, auth)
        target = api.unpaged(NAMESPACE_DIR)["directories"]
        with contextlib.ExitStack() as running:
            for poller in pollers.values():
                running.enter_context(poller)
            idle_start = time.perf_counter()
            time.sleep(PROBE_IDLE_SECONDS)
            busy_start = time.perf_counter()
            listings = 0
            while listings == 0 or time.perf_counter() - busy_start < self.knobs.seconds:
                timed(api, target)
                listings += 1
            busy_end = time.perf_counter()
        for key, poller in pollers.items():
            busy = probe_summary(poller.between(busy_start, busy_end))
            idle = probe_summary(poller.between(idle_start, busy_start))
            if busy["p99_ms"] is not None:
                self.measured.record(key, api.name, busy["p99_ms"])
            self.measured.diagnostics.setdefault(key, {})[api.name] = {
                "url": poller.command[3],
                "listings": listings,
                "listing_seconds": round(busy_end - busy_start, 3),
                "during_listings": busy,
                "idle": idle,
                "errors": busy["failed"],
            }
            logger.info(
                "%s: %s p99 %s ms during %d unpaged listings (idle %s ms)",
                api.name,
                poller.command[3],
                busy["p99_ms"],
                listings,
                idle["p99_ms"],
            )

    def _small_listing(self, key: str, api: Namespace, target: str) -> None:
        """The listing of the small directory, median of SMALL_LISTING_RUNS (ms)."""
        median, runs = median_ms(api, target, SMALL_LISTING_RUNS)
        self.measured.record(key, api.name, median)
        self.measured.diagnostics.setdefault(key, {})[api.name] = {
            "target": target,
            "min_ms": round(min(runs), 3),
            "max_ms": round(max(runs), 3),
        }

    def _remove(self, api: Namespace, objects_before: int, volumes: Path | None) -> None:
        """Rename NAMESPACE_DIR, delete it recursively, and (``volumes``) time how long
        until the storage nodes' folders hold no more files than before the fill.
        """
        start = time.perf_counter()
        api.rename(NAMESPACE_DIR, NAMESPACE_RENAMED)
        renamed = time.perf_counter()
        self.measured.record("ns_rename", api.name, renamed - start)
        gone = f"{NAMESPACE_DIR.rsplit('/', 1)[0]}/{NAMESPACE_RENAMED}"
        api.delete_tree(gone)
        deleted = time.perf_counter()
        self.measured.record("ns_delete", api.name, deleted - renamed)
        logger.info(
            "%s: renamed in %.3fs, deleted in %.3fs", api.name, renamed - start, deleted - renamed
        )
        if volumes is None:
            return
        left = file_count(volumes)
        while left > objects_before and time.perf_counter() - deleted < RECLAIM_TIMEOUT:
            time.sleep(RECLAIM_POLL)
            left = file_count(volumes)
        reclaimed = time.perf_counter() - deleted
        self.measured.record("ns_reclaim", api.name, reclaimed)
        self.measured.diagnostics.setdefault("ns_reclaim", {})[api.name] = {
            "volume_files_before_fill": objects_before,
            "volume_files_left": left,
            "timed_out": left > objects_before,
        }
        logger.info("%s: volumes back to %d files after %.2fs", api.name, left, reclaimed)

    def local_cluster(self, stack: contextlib.ExitStack) -> None:
        """The local cluster rows: the big transfers through door 1 at each replication
        factor, and gateway-1's peak RSS meanwhile; the 4 KiB GET and PUT rates through
        both doors (nginx, then gateway-1 and gateway-2) at CLUSTER_RATE_FACTORS. Next to
        them ``callfs dev``'s own transfers and 4 KiB rates, measured here unless the files
        section has measured them already. Then the big transfers again with the cluster
        in RAM (see :meth:`cluster_in_ram`).
        """
        if "disk" in self.knobs.cluster_volumes:
            self._cluster_on_disk(stack)
        if "ram" in self.knobs.cluster_volumes:
            self.cluster_in_ram(stack)

    def _cluster_on_disk(self, stack: contextlib.ExitStack) -> None:
        """The cluster under the scratch folder, next to ``callfs dev``."""
        if self.measured.get("upload", "CallFS") is None:
            callfs = CallFSDev(self.scratch / "callfs")
            stack.callback(callfs.stop)
            logger.info("starting callfs dev (for comparison with the local cluster)")
            ours = callfs.start()
            self.transfers(ours, callfs.pid, "rss")
            self.rates([ours], self.knobs.small_rates, callfs.pid)
            callfs.stop()
        # As root, PostgreSQL runs as an unprivileged user, who must reach its data folder.
        self.scratch.chmod(0o755)
        for factor in CLUSTER_FACTORS:
            root = self.scratch / f"cluster-r{factor}"
            self._cluster(stack, root, factor, "disk", rates=factor in CLUSTER_RATE_FACTORS)

    def cluster_in_ram(self, stack: contextlib.ExitStack) -> None:
        """The big transfers at each replication factor with the cluster's whole folder
        (volumes, PostgreSQL, Redis) in tmpfs under RAM_FOLDER, so that no two storage
        nodes share a disk; skipped, with the reason logged, where there is no room.
        """
        needed = RAM_ROOM_TRANSFERS * self.knobs.size
        shortfall = ram_shortfall(RAM_FOLDER, needed)
        if shortfall is not None:
            logger.warning("not measuring the local cluster in RAM: %s", shortfall)
            self.measured.diagnostics["cluster_ram"] = {"skipped": shortfall}
            return
        folder = Path(tempfile.mkdtemp(prefix="callfs-bench-", dir=RAM_FOLDER))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        folder.chmod(0o755)  # for PostgreSQL's user, as on disk
        for factor in CLUSTER_FACTORS:
            root = folder / f"cluster-r{factor}"
            self._cluster(stack, root, factor, "ram", rates=False)
            shutil.rmtree(root, ignore_errors=True)  # its memory back before the next

    def _cluster(
        self, stack: contextlib.ExitStack, root: Path, factor: int, volumes: str, *, rates: bool
    ) -> None:
        """Start the cluster under ``root`` at replication ``factor``, measure its big
        transfers through door 1 (on disk with gateway-1's peak RSS), with ``rates`` the 4
        KiB rates through both doors, and stop it (also on failure).
        """
        stack.callback(cluster.down, root)  # safe to call twice
        logger.info(
            "starting the local cluster with CALLFS_REPLICATION_FACTOR=%d, volumes on %s",
            factor,
            volumes,
        )
        handle = cluster.up(
            root,
            dict(os.environ) | {"CALLFS_REPLICATION_FACTOR": str(factor)},
            watch_pid=os.getpid(),
        )
        try:
            pids = _cluster_pids(root)
            auth = ("-H", f"Authorization: Bearer {handle.api_keys[0]}")
            doors = [
                Endpoint("CallFS", url + "/v1/files", auth) for url in (handle.url, handle.url2)
            ]
            groups = {name: pids[name] for name in CLUSTER_PROCESSES if name in pids}
            prefix = f"{CLUSTER_PLACEMENTS[volumes]}r{factor}_"
            gateway = pids[CLUSTER_GATEWAY]
            rss_key = prefix + "rss" if volumes == "disk" else None
            self.transfers(doors[0], gateway, rss_key, prefix=prefix, groups=groups)
            if rates:
                self.rates(doors, self.knobs.small_rates, gateway, prefix=prefix, groups=groups)
        finally:
            cluster.down(root)

    def transfers(
        self,
        endpoint: Endpoint,
        pid: int | None,
        rss_key: str | None,
        *,
        prefix: str = "",
        as_name: str | None = None,
        groups: Mapping[str, int] | None = None,
    ) -> None:
        """Upload then download the big file, best of ``repeat``; watch ``pid`` meanwhile
        (and the CPU time of the process ``groups``, name -> process group id, if given).
        """
        name = as_name or endpoint.name
        if rss_key and pid is not None:
            idle = rss_bytes(pid) / MIB
            self.measured.diagnostics.setdefault(rss_key, {})[name] = {"idle_mib": round(idle, 1)}
            logger.info("%s: RSS %.0f MiB before the transfers", name, idle)
        # A first small write warms the server up (SeaweedFS grows its volumes then).
        load.put_small(endpoint, SMALL_PATH, self.small, self.scratch)
        runs: dict[str, list[tuple[Transfer, ProcessWatch | None]]] = {"upload": [], "download": []}
        for _ in range(self.knobs.repeat):
            with _watch(pid, groups) as up:
                uploaded = load.upload(endpoint, BIG_PATH, self.source, self.scratch)
            runs["upload"].append((uploaded, up))
            with _watch(pid, groups) as down:
                downloaded = load.download(endpoint, BIG_PATH, self.knobs.size)
            runs["download"].append((downloaded, down))
        for direction, results in runs.items():
            self._transfer(prefix + direction, name, endpoint, results)
        watches = [watch for results in runs.values() for _, watch in results if watch]
        if rss_key and watches:
            peak = max(watch.peak_rss_bytes for watch in watches)
            self.measured.record(rss_key, name, peak / MIB)

    def _transfer(
        self,
        measurement: str,
        name: str,
        endpoint: Endpoint,
        results: list[tuple[Transfer, ProcessWatch | None]],
    ) -> None:
        """Keep the fastest of ``results``, and every run in the diagnostics."""
        best, watch = max(results, key=lambda result: result[0].mb_per_s)
        self.measured.record(measurement, name, best.mb_per_s)
        details: dict[str, Any] = {
            "mb_per_s": [round(transfer.mb_per_s, 1) for transfer, _ in results],
            "seconds": [round(transfer.seconds, 3) for transfer, _ in results],
        }
        watches = [watch for _, watch in results if watch is not None]
        if watches:
            details["cpu_share"] = [round(watch.cpu_share, 2) for watch in watches]
            details["peak_rss_mib"] = [round(watch.peak_rss_bytes / MIB, 1) for watch in watches]
            if any(watch.groups for watch in watches):
                details["machine_busy_share"] = [
                    round(watch.machine_busy_share, 2) for watch in watches
                ]
                details["cpu_share_by_process"] = [
                    {name: round(share, 2) for name, share in watch.group_cpu_shares.items()}
                    for watch in watches
                ]
        self.measured.diagnostics.setdefault(measurement, {})[name] = details
        extra = f", CallFS CPU {watch.cpu_share:.0%} of a core" if watch else ""
        runs = ", ".join(f"{transfer.mb_per_s:.0f}" for transfer, _ in results)
        logger.info(
            "%s (%s): %s best %.0f MB/s (runs: %s)%s",
            name,
            endpoint.base,
            measurement,
            best.mb_per_s,
            runs,
            extra,
        )

    def rate(
        self, measurement: str, endpoint: Endpoint, rate: Rate, watch: ProcessWatch | None
    ) -> None:
        """Keep a wrk result, with its request count and failures, and CallFS's CPU."""
        self.measured.record(measurement, endpoint.name, rate.requests_per_s)
        details: dict[str, Any] = asdict(rate)
        extra = ""
        if watch is not None:
            cpu = _callfs_cpu_seconds(watch)
            per_request = cpu / rate.requests if rate.requests else None
            details["cpu_share"] = round(watch.cpu_share, 2)
            details["cpu_seconds"] = round(cpu, 3)
            details["cpu_seconds_per_request"] = (
                round(per_request, 7) if per_request is not None else None
            )
            extra = f", CallFS CPU {watch.cpu_share:.0%} of a core"
            if per_request is not None:
                extra += f", {per_request * 1000:.2f} ms per request"
            if watch.groups:
                shares = watch.group_cpu_shares
                details["machine_busy_share"] = round(watch.machine_busy_share, 2)
                details["cpu_share_by_process"] = {
                    name: round(share, 2) for name, share in shares.items()
                }
                gateways = [f"{name} {shares[name]:.0%}" for name in cluster.GATEWAYS]
                extra += f" ({', '.join(gateways)})"
        self.measured.diagnostics.setdefault(measurement, {})[endpoint.name] = details
        logger.info(
            "%s: %s %.0f req/s (%d requests, %d failed, p50 %s ms, p99 %s ms)%s",
            endpoint.name,
            measurement.upper(),
            rate.requests_per_s,
            rate.requests,
            rate.errors,
            rate.p50_ms,
            rate.p99_ms,
            extra,
        )

    def profile(self, ours: Endpoint, pid: int, backend: str) -> None:
        """py-spy CallFS during one more run of each measurement; keep the hot functions."""
        self.knobs.out.mkdir(parents=True, exist_ok=True)
        seconds = self.knobs.seconds
        runs: dict[str, Callable[[], object]] = {
            "upload": lambda: load.upload(ours, PROFILED_PATH, self.source, self.scratch),
            "download": lambda: load.download(ours, PROFILED_PATH, self.knobs.size),
        }
        if backend == "localfs":
            get, put = self.knobs.small_rates
            runs[get.key] = lambda: self._wrk([ours], get, seconds)
            runs[put.key] = lambda: self._wrk([ours], put, seconds)
        for name, run in runs.items():
            output = (self.knobs.out / f"profile-{backend}-{name}.txt").resolve()
            logger.info("profiling CallFS (%s) during %s", backend, name)
            with Recording(pid, output) as recording:
                run()
            profile = Profile.read(output)
            self.measured.profiles[f"{backend} {name}"] = {
                "file": str(output),
                "samples": profile.samples,
                "seconds": round(recording.seconds, 1),
                "gil_share": round(recording.gil_share(profile.samples), 2),
                "own": [asdict(spot) for spot in profile.by_own(20)],
                "total": [asdict(spot) for spot in profile.by_total(30)],
            }


def _watch(
    pid: int | None, groups: Mapping[str, int] | None = None
) -> contextlib.AbstractContextManager[ProcessWatch | None]:
    """Watch ``pid`` (and the CPU time of ``groups``), or nothing."""
    if pid is None:
        return contextlib.nullcontext()
    return ProcessWatch(pid, groups=groups)


def _callfs_cpu_seconds(watch: ProcessWatch) -> float:
    """The CPU seconds CallFS used under ``watch``: the watched process (``callfs dev``),
    or on the local cluster its gateways and storage nodes together.
    """
    if not watch.groups:
        return watch.cpu_seconds
    return sum(
        seconds for name, seconds in watch.group_cpu_seconds.items() if name in CLUSTER_CALLFS
    )


def _cluster_pids(root: Path) -> dict[str, int]:
    """The pid of every running process of the local cluster under ``root``, by name.

    Each is the leader of its own process group, so the pid is the group id too.

    Raises:
        RuntimeError: a gateway (each is behind one of the doors) is not running.
    """
    pids = {name: pid for name, pid, running in cluster.status(root) if running}
    missing = [name for name in cluster.GATEWAYS if name not in pids]
    if missing:
        raise RuntimeError(f"the local cluster in {root} has no running {', '.join(missing)}")
    return pids


def _bytes_label(size: int) -> str:
    """``4 KiB``, ``64 KiB``, or bytes when not whole KiB."""
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} bytes"


def _get_path(knobs: Knobs, size: int) -> str:
    """The file a GET row of ``size`` bytes fetches."""
    return SMALL_PATH if size == knobs.small_bytes else MEDIUM_PATH


def _s3_environment(weed: Seaweed) -> dict[str, str]:
    """``callfs dev`` settings that put every new file in SeaweedFS's S3 gateway."""
    return {
        "CALLFS_BACKEND_DEFAULT_BACKEND": "s3",
        "CALLFS_BACKEND_S3_ENDPOINT": weed.endpoint,
        "CALLFS_BACKEND_S3_BUCKET_NAME": CALLFS_BUCKET,
        "CALLFS_BACKEND_S3_REGION": weed.region,
        "CALLFS_BACKEND_S3_ACCESS_KEY": weed.access_key,
        "CALLFS_BACKEND_S3_SECRET_KEY": weed.secret_key,
    }


def _names(variable: str, value: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    """The ``choices`` named in ``variable``'s ``value`` (comma-separated), all when empty.

    Raises:
        ValueError: a name is not one of ``choices``.
    """
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in choices]
    if unknown:
        raise ValueError(f"{variable}: unknown {', '.join(unknown)} (of {choices})")
    return tuple(choice for choice in choices if choice in names) if names else choices


def ram_shortfall(folder: Path, needed: int) -> str | None:
    """Why the cluster cannot live in ``folder`` (tmpfs) for ``needed`` bytes, or None.

    tmpfs pages are memory, so the machine's available memory must hold them as well.
    """
    if not folder.is_dir():
        return f"{folder} does not exist"
    free = shutil.disk_usage(folder).free
    if free < needed:
        return f"{folder} has {free / MIB:,.0f} MiB free, under the {needed / MIB:,.0f} MiB needed"
    available = _memory_available()
    if available is not None and available < needed:
        return (
            f"{available / MIB:,.0f} MiB of memory available, "
            f"under the {needed / MIB:,.0f} MiB needed"
        )
    return None


def _memory_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The kernel's ``MemAvailable`` in bytes, None where it does not say."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == "MemAvailable":
            return int(value.split()[0]) * 1024
    return None


def _random_file(path: Path, size: int, block: int = 8 * MIB) -> None:
    """Write ``size`` random bytes (incompressible, so nothing can shortcut them)."""
    with path.open("wb") as out:
        for offset in range(0, size, block):
            out.write(os.urandom(min(block, size - offset)))


def rows(knobs: Knobs, measured: Measured) -> list[Row]:
    """The table: each measurement with its targets from the benchmark issue."""
    size = knobs.size_label
    rate_targets = {"get": Target(None, 0.5), "put": Target(None, 0.5)}
    # (label, unit, CallFS's key, target, the peers' key when it differs)
    specs: tuple[tuple[str, str, str, Target, str | None], ...] = (
        (f"{size} download", "MB/s", "download", Target(None, 1.0), None),
        (f"{size} upload", "MB/s", "upload", Target(0.8), None),
        *(
            (spec.label, "req/s", spec.key, rate_targets.get(spec.key, Target()), None)
            for spec in knobs.rates
        ),
        *(
            (
                spec.label + INLINE_WHERE,
                "req/s",
                INLINE_PREFIX + spec.key,
                rate_targets.get(spec.key, Target()),
                spec.key,
            )
            for spec in knobs.small_rates
        ),
        (f"S3 {size} download", "MB/s", "s3_download", Target(None, 1.0), None),
        (f"S3 {size} upload", "MB/s", "s3_upload", Target(None, 1.0), None),
        (f"peak RSS, {size} transfers", "MiB", "rss", Target(max_value=200), None),
        (f"peak RSS, S3 {size} transfers", "MiB", "s3_rss", Target(max_value=200), None),
    )
    result = []
    for label, unit, key, target, peers_key in specs:
        callfs = measured.get(key, "CallFS")
        if callfs is None:
            continue
        peers = peers_key or key
        result.append(
            Row(
                label,
                unit,
                callfs,
                measured.get(peers, "nginx") if target.max_value is None else None,
                measured.get(peers, "SeaweedFS") if target.max_value is None else None,
                target,
                errors=_failures(measured, key),
                cpu_seconds_per_request=_cpu_per_request(measured, key),
            )
        )
    return result + namespace_rows(knobs, measured) + cluster_rows(knobs, measured)


def namespace_rows(knobs: Knobs, measured: Measured) -> list[Row]:
    """The namespace section's rows: CallFS and the SeaweedFS filer on one directory of
    ``namespace_files`` 16-byte files (targets from the namespace issue, set for 100,000).
    """
    files = f"{knobs.namespace_files:,}"
    page = f"{NAMESPACE_PAGE:,}"
    probe = "10 ms polls during unpaged listings"
    specs: tuple[tuple[str, str, str, Target, bool], ...] = (
        (
            f"create {files} 16-byte files in one dir, {NAMESPACE_CONNECTIONS} conns",
            "req/s",
            "ns_create",
            Target(),
            False,
        ),
        (
            f"list {files} entries, pages of {page}",
            "s",
            "ns_list_paged",
            Target(min_vs_seaweed=1.0),
            True,
        ),
        (f"first page of {page} of {files}, median of 5", "ms", "ns_first_page", Target(), True),
        (
            f"unpaged listing of {files}, GET /v1/directories",
            "s",
            "ns_unpaged_directories",
            Target(),
            True,
        ),
        (
            f"unpaged listing of {files}, GET /v1/files/dir/",
            "s",
            "ns_unpaged_files",
            Target(),
            True,
        ),
        (
            "RSS growth, unpaged listing /v1/directories",
            "MiB",
            "ns_unpaged_directories_rss",
            Target(max_value=30),
            True,
        ),
        (
            "RSS growth, unpaged listing /v1/files/dir/",
            "MiB",
            "ns_unpaged_files_rss",
            Target(max_value=30),
            True,
        ),
        (f"/health p99, {probe}", "ms", "ns_probe_health", Target(max_value=50), True),
        (
            f"cached 4 KiB GET p99, {probe}",
            "ms",
            "ns_probe_cached",
            Target(max_value=50),
            True,
        ),
        (
            f"list a {NAMESPACE_SMALL_FILES}-file dir, before the fill, median of 50",
            "ms",
            "ns_small_before",
            Target(),
            True,
        ),
        (
            f"list a {NAMESPACE_SMALL_FILES}-file dir beside {files} files, median of 50",
            "ms",
            "ns_small_after",
            Target(),
            True,
        ),
        (f"rename a dir of {files} files", "s", "ns_rename", Target(max_value=2), True),
        (f"recursive DELETE of {files} files", "s", "ns_delete", Target(max_value=5), True),
        (
            f"reclaim the {files} deleted files' objects",
            "s",
            "ns_reclaim",
            Target(max_value=60),
            True,
        ),
        (
            f"disk per file, {files} 16-byte files (data + metadata)",
            "bytes",
            "ns_disk",
            Target(max_value=1000),
            True,
        ),
    )
    result = []
    # callfs dev's rows, then the local cluster's, each beside the same filer figure.
    for name, where in (
        ("CallFS", ""),
        (NAMESPACE_INLINE, INLINE_WHERE),
        (NAMESPACE_CLUSTER, ", local cluster (PostgreSQL)"),
    ):
        for label, unit, key, target, lower_is_better in specs:
            callfs = measured.get(key, name)
            if callfs is None:
                continue
            if name == NAMESPACE_CLUSTER and key == "ns_disk":
                label = label.replace("data + metadata", "storage nodes' volumes only")
            errors = _failures(measured, key.removesuffix("_rss"))
            result.append(
                Row(
                    label + where,
                    unit,
                    callfs,
                    None,
                    measured.get(key, "SeaweedFS"),
                    target,
                    errors={n: errors[n] for n in (name, "SeaweedFS") if n in errors},
                    cpu_seconds_per_request=_cpu_per_request(measured, key, name),
                    lower_is_better=lower_is_better,
                )
            )
    return result


def cluster_rows(knobs: Knobs, measured: Measured) -> list[Row]:
    """The local cluster's rows: MB/s at each replication factor, R=2 over R=1 (volumes on
    the one shared disk, then in RAM), the 4 KiB rates through both doors, gateway RSS;
    each gateway's CPU share beside them.
    """
    size = knobs.size_label
    result = []
    for direction, ratio_target in (("upload", Target(min_value=0.7)), ("download", Target())):
        for volumes, prefix in CLUSTER_PLACEMENTS.items():
            # The disk rows keep their names; only the ratio says why it is low here.
            where = ", volumes in RAM" if volumes == "ram" else ""
            ratio_where = where or ", volumes on one shared disk"
            keys = {factor: f"{prefix}r{factor}_{direction}" for factor in CLUSTER_FACTORS}
            figures = {factor: measured.get(key, "CallFS") for factor, key in keys.items()}
            for factor, figure in figures.items():
                if figure is not None:
                    label = f"{size} {direction}, local cluster R={factor}{where}"
                    shares = _gateway_shares(measured, keys[factor])
                    row = Row(label, "MB/s", figure, None, None, Target(), cpu_shares=shares)
                    result.append(row)
            one, two = figures[1], figures[2]
            if one and two is not None:
                label = f"{size} {direction}, local cluster R=2/R=1{ratio_where}"
                result.append(Row(label, "x", two / one, None, None, ratio_target))
    for factor in CLUSTER_RATE_FACTORS:
        for spec in knobs.small_rates:
            key = f"cluster_r{factor}_{spec.key}"
            figure = measured.get(key, "CallFS")
            if figure is not None:
                result.append(
                    Row(
                        f"{spec.label}, local cluster R={factor}, both doors",
                        "req/s",
                        figure,
                        None,
                        None,
                        Target(),
                        errors=_failures(measured, key),
                        cpu_seconds_per_request=_cpu_per_request(measured, key),
                        cpu_shares=_gateway_shares(measured, key),
                    )
                )
    for factor in CLUSTER_FACTORS:
        peak = measured.get(f"cluster_r{factor}_rss", "CallFS")
        if peak is not None:
            label = f"peak RSS {CLUSTER_GATEWAY}, local cluster R={factor}, {size} transfers"
            result.append(Row(label, "MiB", peak, None, None, Target(max_value=200)))
    return result


def _cpu_per_request(measured: Measured, key: str, name: str = "CallFS") -> float | None:
    """CallFS's CPU seconds per request during ``key``'s wrk run (None for curl rows);
    ``name``: whose (the local cluster's gateway-1 for its namespace rows)."""
    value = measured.diagnostics.get(key, {}).get(name, {}).get("cpu_seconds_per_request")
    return float(value) if value is not None else None


def _gateway_shares(measured: Measured, key: str) -> dict[str, float]:
    """Each cluster gateway's CPU share (1.0: one core) during ``key``: its wrk run, or the
    fastest of its big transfers.
    """
    details = measured.diagnostics.get(key, {}).get("CallFS", {})
    by_process = details.get("cpu_share_by_process")
    if isinstance(by_process, list):  # a transfer: one entry per run
        speeds = details["mb_per_s"]
        by_process = by_process[speeds.index(max(speeds))]
    if not by_process:
        return {}
    return {name: by_process[name] for name in cluster.GATEWAYS if name in by_process}


def _failures(measured: Measured, key: str) -> dict[str, int]:
    """Failed wrk requests per server for ``key`` (empty for curl measurements)."""
    runs = measured.diagnostics.get(key, {})
    return {name: run["errors"] for name, run in runs.items() if "errors" in run}


def _version(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=10)
    except OSError:
        return "absent"
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _revision() -> str:
    """The commit the measured CallFS was built from, ``+dirty`` with local changes."""
    root = Path(__file__).resolve().parents[1]
    commit = _version(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    changes = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return commit + ("+dirty" if changes.strip() else "")


def environment() -> dict[str, Any]:
    """The machine and the versions a result was measured with."""
    from tools.s3_server import weed_binary

    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "callfs": metadata.version("callfs"),
        "revision": _revision(),
        "nginx": _version([shutil.which("nginx") or "/usr/sbin/nginx", "-v"]),
        "seaweedfs": _version([str(weed_binary()), "version"]),
        "curl": _version(["curl", "--version"]),
        "wrk": _version(["wrk", "--version"]),
    }


def _check_tools(tools: tuple[str, ...]) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        missing.append("nginx")
    if missing:
        raise SystemExit(
            f"benchmarks: missing {', '.join(missing)}: run `make bench` "
            "(it installs them via scripts/system-deps.sh --bench)"
        )


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _profile_text(profiles: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, profile in profiles.items():
        lines.append(
            f"\nCallFS profile, {name}: GIL held {profile['gil_share']:.0%} of "
            f"{profile['seconds']}s ({profile['samples']} samples, {profile['file']})"
        )
        lines.append("  own%  total%  function")
        for spot in profile["own"][:15]:
            lines.append(f"  {spot['own']:4.0%}  {spot['total']:6.0%}  {spot['function']}")
    return "\n".join(lines)


def main() -> int:
    """Run the benchmark; print the table and write ``results.json``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    knobs = Knobs.from_environment(os.environ)
    _check_tools(knobs.tools)
    # One line per process started or stopped is too much here; warnings still show.
    logging.getLogger(cluster.__name__).setLevel(logging.WARNING)
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        logger.warning(
            "load average %.1f: something else is running, figures will be low", load_before
        )
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    scratch = Path(tempfile.mkdtemp(prefix="callfs-bench-"))
    try:
        measured = Bench(knobs, scratch).run()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result_rows = rows(knobs, measured)
    knobs.out.mkdir(parents=True, exist_ok=True)
    results = {
        "environment": {**environment(), "load_before": load_before},
        "knobs": {**asdict(knobs), "out": str(knobs.out)},
        "rows": [row.as_dict() for row in result_rows],
        "diagnostics": measured.diagnostics,
        "profiles": measured.profiles,
    }
    (knobs.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (knobs.out / "results.md").write_text(markdown(result_rows) + "\n")
    sys.stdout.write("\n" + table(result_rows) + "\n")
    for row in result_rows:
        for miss in row.misses():
            sys.stdout.write(f"missed: {row.label}: {miss}\n")
    if measured.profiles:
        sys.stdout.write(_profile_text(measured.profiles) + "\n")
    sys.stdout.write(f"\nresults: {knobs.out / 'results.json'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
