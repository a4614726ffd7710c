"""fsspec's own abstract test suite (``fsspec.tests.abstract``) against a real
``callfs dev``: copy, get, put, open and pipe, as every fsspec filesystem should pass."""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator

import pytest
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)

from callfs.client.fsspec import CallFSFileSystem


class CallFSFixtures(AbstractFixtures):
    """The fixtures fsspec asks each filesystem for, on a CallFS directory per test."""

    @pytest.fixture
    def fs(self, callfs: CallFSFileSystem) -> CallFSFileSystem:
        return callfs

    @pytest.fixture
    def fs_path(self, home: str) -> Iterator[str]:
        yield home  # removed (recursively) by the `home` fixture

    @pytest.fixture
    def fs_join(self) -> Callable[..., str]:
        return posixpath.join

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return True  # CallFS has real directories

    @pytest.fixture
    def fs_sanitize_path(self) -> Callable[[str], str]:
        return lambda path: path


class TestCallFSCopy(AbstractCopyTests, CallFSFixtures):
    pass


class TestCallFSGet(AbstractGetTests, CallFSFixtures):
    pass


class TestCallFSPut(AbstractPutTests, CallFSFixtures):
    pass


class TestCallFSOpen(AbstractOpenTests, CallFSFixtures):
    pass


class TestCallFSPipe(AbstractPipeTests, CallFSFixtures):
    pass
