"""A dependency's state logs when it goes away and when it is back, nothing between."""

from __future__ import annotations

import logging

import pytest

from callfs.health import DependencyState


def test_an_outage_logs_one_warning_and_one_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    state = DependencyState("metadata store")
    state.succeeded()
    for _ in range(5):
        state.failed(ConnectionRefusedError(111, "Connection refused"))
    assert not state.available
    state.succeeded()
    state.succeeded()
    assert state.available
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "metadata store unavailable: [Errno 111] Connection refused"),
        ("INFO", "metadata store available again"),
    ]
    assert not any(r.exc_info for r in caplog.records)


def test_a_reason_without_text_is_named_by_its_type(caplog: pytest.LogCaptureFixture) -> None:
    DependencyState("coordination").failed(TimeoutError())
    assert caplog.messages == ["coordination unavailable: TimeoutError"]
