"""A listener takes a burst of connections at once: the kernel queues them all until
the server accepts them, so none waits on SYN retransmits (a second or more each)."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from callfs.serving import LISTEN_BACKLOG, bind

BURST = 512


def kernel_cap() -> int:
    """The kernel's cap on any listener's queue (net.core.somaxconn)."""
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return BURST


def test_a_burst_of_connections_is_queued_before_any_is_accepted() -> None:
    listener = bind("server.listen_addr", "127.0.0.1:0")
    port = listener.getsockname()[1]
    with listener, contextlib.ExitStack() as clients:
        queued = 0
        for _ in range(BURST):
            client = clients.enter_context(socket.socket())
            client.settimeout(0.5)  # a dropped SYN is retried only after a second
            try:
                client.connect(("127.0.0.1", port))
            except TimeoutError:
                break
            queued += 1

    assert LISTEN_BACKLOG >= BURST
    # One more than the queue's length fits (the kernel's check is "more than").
    assert queued >= min(BURST, kernel_cap())
