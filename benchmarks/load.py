"""The load generators: curl for one big transfer, wrk for many small requests (for a
given time, or a given number of file creations).

Both are native programs, the same for every server, so the client costs the
same whoever answers and is never the Python harness.
"""

from __future__ import annotations

import itertools
import os
import re
import select
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.servers import Endpoint

WRK_TIMEOUT = "30s"

_PUT_SCRIPT = """\
-- PUT a fixed body, every request to a path never used before: the prefix (unique to
-- this wrk run), the thread's number (from setup, so no two threads share it), then the
-- thread's own request counter. No math.random: every thread would draw the same names.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

local counter = 0
wrk.method = "PUT"
wrk.body = string.rep("x", {size})

function request()
  counter = counter + 1
  return wrk.format(nil, "{prefix}" .. id .. "-" .. counter)
end
"""

# Numbers the PUT runs of this process, so no two of them (the warm-up and the measured
# run, two doors side by side) name the same files.
_put_runs = itertools.count(1)


class LoadError(RuntimeError):
    """A request failed, or a load generator did not report what it measured."""


@dataclass(frozen=True)
class Transfer:
    """One big request: bytes moved and the seconds it took, as curl measured."""

    size: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        """Throughput in MB/s (10^6 bytes per second)."""
        return self.size / self.seconds / 1e6


@dataclass(frozen=True)
class Rate:
    """A wrk run: requests per second, how many failed (non-2xx or socket errors), latency."""

    requests_per_s: float
    requests: int
    errors: int
    p50_ms: float | None = None
    p99_ms: float | None = None
    parts: tuple[Rate, ...] = ()

    @classmethod
    def combined(cls, rates: Sequence[Rate]) -> Rate:
        """wrk runs side by side as one: rates, requests and failures summed, the worse
        run's latency; the runs themselves kept as ``parts`` (none for a single run).
        """
        if len(rates) == 1:
            return rates[0]
        p50s = [rate.p50_ms for rate in rates if rate.p50_ms is not None]
        p99s = [rate.p99_ms for rate in rates if rate.p99_ms is not None]
        return cls(
            sum(rate.requests_per_s for rate in rates),
            sum(rate.requests for rate in rates),
            sum(rate.errors for rate in rates),
            max(p50s) if p50s else None,
            max(p99s) if p99s else None,
            tuple(rates),
        )


def _curl(endpoint: Endpoint, path: str, args: list[str], body_out: Path) -> tuple[int, float]:
    """Run curl on ``path``; return the bytes moved and the total seconds.

    Raises:
        LoadError: curl failed or the server answered other than 2xx.
    """
    command = ["curl", "--silent", "--show-error", *endpoint.auth, *args]
    command += [
        "--output",
        str(body_out),
        "--write-out",
        "%{http_code} %{time_total} %{size_upload} %{size_download}",
    ]
    command.append(endpoint.url(path))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LoadError(f"curl {endpoint.name} {path}: {result.stderr.strip()}")
    status, seconds, uploaded, downloaded = result.stdout.split()
    if not status.startswith("2"):
        body = "" if body_out == Path("/dev/null") else body_out.read_text(errors="replace")
        raise LoadError(f"{endpoint.name} answered {status} for {path}: {body[:300]}")
    return max(int(float(uploaded)), int(float(downloaded))), float(seconds)


def upload(endpoint: Endpoint, path: str, source: Path, scratch: Path) -> Transfer:
    """PUT the file ``source`` to ``path`` in one streamed request.

    Raises:
        LoadError: the upload failed or was cut short.
    """
    size, seconds = _curl(endpoint, path, ["--upload-file", str(source)], scratch / "answer")
    if size != source.stat().st_size:
        raise LoadError(f"{endpoint.name} took {size} of {source.stat().st_size} bytes")
    return Transfer(size, seconds)


def download(endpoint: Endpoint, path: str, expected: int) -> Transfer:
    """GET ``path`` into /dev/null.

    Raises:
        LoadError: the download failed or its size is not ``expected``.
    """
    size, seconds = _curl(endpoint, path, [], Path("/dev/null"))
    if size != expected:
        raise LoadError(f"{endpoint.name} sent {size} bytes of {path}, expected {expected}")
    return Transfer(size, seconds)


def put_small(endpoint: Endpoint, path: str, source: Path, scratch: Path) -> None:
    """PUT a small file (the one the GET runs fetch)."""
    _curl(endpoint, path, ["--upload-file", str(source)], scratch / "answer")


def _parse_wrk(output: str) -> Rate:
    """Requests/sec, the request count and the failures from wrk's report.

    Raises:
        LoadError: the report has no request rate.
    """
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rate is None or total is None:
        raise LoadError(f"wrk printed no request rate:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return Rate(
        float(rate.group(1)),
        int(total.group(1)),
        errors,
        _percentile_ms(output, 50),
        _percentile_ms(output, 99),
    )


def _percentile_ms(output: str, percent: int) -> float | None:
    """A latency percentile of wrk's ``--latency`` distribution, in milliseconds."""
    found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if found is None:
        return None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
    return round(float(found.group(1)) * scale, 3)


def _wrk_command(url: str, endpoint: Endpoint, options: list[str]) -> list[str]:
    command = ["wrk", *options, "--timeout", WRK_TIMEOUT, "--latency"]
    for header in endpoint.headers:
        command += ["--header", header]
    command.append(url)
    return command


def _wrk(runs: Sequence[tuple[Endpoint, list[str]]]) -> Rate:
    """Run the wrk ``runs`` (endpoint, command) side by side; their rates combined.

    Raises:
        LoadError: a wrk run failed or printed no request rate.
    """
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _, command in runs
    ]
    try:
        outputs = [process.communicate() for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    rates = []
    for (endpoint, _), process, (stdout, stderr) in zip(runs, processes, outputs, strict=True):
        if process.returncode != 0:
            raise LoadError(f"wrk against {endpoint.name} failed:\n{stdout}{stderr}")
        rates.append(_parse_wrk(stdout))
    return Rate.combined(rates)


@dataclass(frozen=True)
class Concurrency:
    """How hard wrk pushes: connections, threads, and for how long."""

    connections: int
    threads: int
    seconds: float

    @property
    def warm_up_seconds(self) -> float:
        """A short unmeasured run before each measured one: connections, caches, files."""
        return min(3.0, max(1.0, self.seconds / 5))

    def options(self, seconds: float) -> list[str]:
        """wrk's command-line options for a run of ``seconds``."""
        return [f"-t{self.threads}", f"-c{self.connections}", f"-d{max(1, round(seconds))}s"]

    def with_connections(self, connections: int) -> Concurrency:
        """The same load with ``connections`` connections."""
        return Concurrency(connections, self.threads, self.seconds)

    def split(self, parts: int) -> list[Concurrency]:
        """This load shared by ``parts`` wrk runs side by side: the connections divided
        among them (the first take one more where they do not divide), the threads too.
        """
        threads = max(1, self.threads // parts)
        share, extra = divmod(self.connections, parts)
        return [
            Concurrency(max(threads, share + (index < extra)), threads, self.seconds)
            for index in range(parts)
        ]


def get_rate(endpoints: Sequence[Endpoint], path: str, load: Concurrency, seconds: float) -> Rate:
    """GET ``path`` over and over for ``seconds`` from ``load.connections`` connections,
    spread over ``endpoints`` (one wrk each, side by side; the rates summed).
    """
    shares = load.split(len(endpoints))
    return _wrk(
        [
            (endpoint, _wrk_command(endpoint.url(path), endpoint, share.options(seconds)))
            for endpoint, share in zip(endpoints, shares, strict=True)
        ]
    )


def put_rate(
    endpoints: Sequence[Endpoint],
    folder: str,
    size: int,
    load: Concurrency,
    seconds: float,
    scratch: Path,
) -> Rate:
    """PUT ``size``-byte bodies for ``seconds``, each to a new file in ``folder``, from
    ``load.connections`` connections spread over ``endpoints`` (as :func:`get_rate`).
    """
    runs = []
    for endpoint, share in zip(endpoints, load.split(len(endpoints)), strict=True):
        run = next(_put_runs)
        prefix = urllib.parse.urlsplit(endpoint.url(f"{folder}/w{run}-")).path
        script = scratch / f"put-{run}.lua"
        script.write_text(_PUT_SCRIPT.format(size=size, prefix=prefix))
        options = [*share.options(seconds), "--script", str(script)]
        runs.append((endpoint, _wrk_command(endpoint.url(folder), endpoint, options)))
    return _wrk(runs)


_CREATE_SCRIPT = """\
-- Create a fixed number of files per thread (its quota, handed out in setup), each under
-- a fresh name: the batch's prefix, the thread's number, the thread's own counter. Once
-- the thread has issued its quota its connections wait (delay) instead of sending more;
-- once every answer is in it prints "done <thread> <failed> <last failed status>" and
-- stops. The harness
-- times the batch from start to the last "done" and then ends wrk (SIGINT).
local quotas = {{{quotas}}}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
  thread:set("quota", quotas[threads])
end

local issued = 0
local answered = 0
local failed = 0
local failed_status = 0
local payload = string.rep("x", {size})
-- wrk calls request() once in the first thread before it runs, to check the request, and
-- sends nothing; every request it sends comes after a call of delay().
local running = false

function delay()
  running = true
  if issued >= quota then
    return 3600000
  end
  return 0
end

-- A connection with nothing left to create asks for "{idle}" (404) instead: wrk may
-- send that before its delay, so a 404 while such a request is out is its answer, not
-- a create's.
local idle_sent = 0

function request()
  if not running or issued >= quota then
    if running then
      idle_sent = idle_sent + 1
    end
    return wrk.format("GET", "{idle}")
  end
  issued = issued + 1
  return wrk.format("{method}", "{prefix}" .. id .. "-" .. issued, nil, payload)
end

function response(status, headers, body)
  if status == 404 and idle_sent > 0 then
    idle_sent = idle_sent - 1
    return
  end
  answered = answered + 1
  if status ~= {status} then
    failed = failed + 1
    failed_status = status
  end
  if answered == quota then
    io.write("done " .. id .. " " .. failed .. " " .. failed_status .. "\\n")
    io.flush()
    wrk.thread:stop()
  end
end
"""

# Numbers the create batches of this process, so no two of them name the same files.
_create_runs = itertools.count(1)


@dataclass(frozen=True)
class Batch:
    """A fixed number of files created by wrk: the seconds it took (timed by the harness,
    from starting wrk to the last answer), how many creates failed and the status of the
    last failure (0: none).
    """

    files: int
    seconds: float
    failed: int
    failed_status: int = 0

    @property
    def files_per_s(self) -> float:
        """Creates per second."""
        return self.files / self.seconds


def create_batch(
    endpoint: Endpoint,
    folder: str,
    files: int,
    *,
    method: str,
    status: int,
    size: int,
    connections: int,
    threads: int,
    scratch: Path,
    timeout: float = 900.0,
) -> Batch:
    """Create ``files`` files of ``size`` bytes in ``folder``, each under a new name, with
    ``method`` from ``connections`` connections; an answer other than ``status`` is a
    failure. wrk cannot stop at a count by itself: each thread stops itself after its
    share and says so on stdout, and the batch ends with the last thread's word.

    Raises:
        LoadError: wrk failed, or the batch did not end within ``timeout`` seconds.
    """
    # Every connection must have a file of its thread's share to create.
    threads = max(1, min(threads, connections, files))
    connections = max(threads, min(connections, files))
    share, extra = divmod(files, threads)
    quotas = [share + (index < extra) for index in range(threads)]
    if min(quotas) < connections // threads:
        raise LoadError(f"a batch of {files} files is too small for {connections} connections")
    run = next(_create_runs)
    prefix = urllib.parse.urlsplit(endpoint.url(f"{folder}/c{run}-")).path
    idle = urllib.parse.urlsplit(endpoint.url(f"{folder}/.absent")).path
    script = scratch / f"create-{run}.lua"
    script.write_text(
        _CREATE_SCRIPT.format(
            quotas=", ".join(map(str, quotas)),
            size=size,
            idle=idle,
            method=method.upper(),
            prefix=prefix,
            status=status,
        )
    )
    options = [f"-t{threads}", f"-c{connections}", "-d3600s", "--script", str(script)]
    command = _wrk_command(endpoint.url(folder), endpoint, options)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        failed, failed_status, seconds = _wait_done(process, threads, start, timeout)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise LoadError(f"wrk against {endpoint.name} failed: {stderr.decode(errors='replace')}")
    return Batch(files, seconds, failed, failed_status)


def _wait_done(
    process: subprocess.Popen[bytes], threads: int, start: float, timeout: float
) -> tuple[int, int, float]:
    """Read wrk's stdout until each of ``threads`` printed ``done``; the failures they
    counted, the status of one failure (0: none), and the seconds from ``start`` to the
    last of them.

    Raises:
        LoadError: wrk exited first, or ``timeout`` seconds passed.
    """
    assert process.stdout is not None
    fd = process.stdout.fileno()
    deadline = start + timeout
    pending = b""
    done: dict[str, tuple[int, int]] = {}
    while len(done) < threads:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise LoadError(f"wrk: only {len(done)} of {threads} threads done in {timeout:.0f}s")
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise LoadError(f"wrk exited before its threads were done: {stderr.strip()}")
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            words = line.decode(errors="replace").split()
            if len(words) == 4 and words[0] == "done":
                done[words[1]] = (int(words[2]), int(words[3]))
    seconds = time.perf_counter() - start
    failed = sum(count for count, _ in done.values())
    return failed, max(status for _, status in done.values()), seconds
