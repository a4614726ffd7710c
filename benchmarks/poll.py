"""A latency probe: GET one URL every ``interval`` seconds until its stdin closes.

The namespace section runs it as ``python -m benchmarks.poll URL [HEADER ...]``, one
process per probed URL, so that nothing the harness does (reading and parsing a big
listing) delays a probe. It keeps one keep-alive connection (``http.client``), waits
``POLL_INTERVAL`` after each answer, prints ``ready`` once it starts, and when stdin
closes one JSON line: ``[start, milliseconds, status]`` per request, ``start`` on
``time.perf_counter``'s clock (CLOCK_MONOTONIC on Linux, the harness's clock too),
status 0 for a request that failed without an answer.
"""

from __future__ import annotations

import http.client
import json
import select
import sys
import time
import urllib.parse

POLL_INTERVAL = 0.01
TIMEOUT = 30.0


def main(argv: list[str]) -> int:
    """Poll ``argv[0]`` with the headers ``argv[1:]`` (``Name: value``) until stdin closes."""
    url, *header_lines = argv
    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = dict(line.split(": ", 1) for line in header_lines)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT)
    samples: list[tuple[float, float, int]] = []
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while not select.select([sys.stdin], [], [], POLL_INTERVAL)[0]:
        start = time.perf_counter()
        try:
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            status = 0
        samples.append((start, (time.perf_counter() - start) * 1000, status))
    connection.close()
    sys.stdout.write(json.dumps(samples) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
