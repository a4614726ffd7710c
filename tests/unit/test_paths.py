"""Path validation: the one function every path goes through."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callfs import paths
from callfs.errors import InvalidPath


@pytest.mark.parametrize(
    ("raw", "path", "trailing"),
    [
        ("", "/", True),
        ("/", "/", True),
        ("a", "/a", False),
        ("/a/b", "/a/b", False),
        ("a/b/", "/a/b", True),
        ("with space/ünï.txt", "/with space/ünï.txt", False),
        ("...", "/...", False),
        ("a+b@c", "/a+b@c", False),
    ],
)
def test_valid_paths_normalize(raw: str, path: str, trailing: bool) -> None:
    assert paths.normalize(raw) == paths.RequestPath(path, trailing)


@pytest.mark.parametrize(
    "raw",
    [
        "..",
        "a/..",
        "a/../b",
        ".",
        "a/./b",
        "a//b",
        "//a",
        "a\\b",
        "a\x00b",
        "a\x1fb",
        "a\x7fb",
        "x" * 256,
        "/".join(["y" * 250] * 17),
    ],
)
def test_invalid_paths_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidPath):
        paths.normalize(raw)


@pytest.mark.parametrize("raw", ["a%2Fb", "a%2fb", "%2e%2e", "a/%2E%2E/b", "a%5Cb", "a%00", "%ff"])
def test_encoded_tricks_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidPath):
        paths.from_url(raw)


def test_url_is_decoded_once() -> None:
    assert paths.from_url("a%20b/%25252e").path == "/a b/%252e"


def test_segment_limits_count_bytes() -> None:
    assert paths.normalize("é" * 127).path == "/" + "é" * 127
    with pytest.raises(InvalidPath):
        paths.normalize("é" * 128)


@given(st.text(max_size=300))
def test_no_input_escapes_the_namespace(raw: str) -> None:
    try:
        result = paths.normalize(raw)
    except InvalidPath:
        return
    path = result.path
    assert path.startswith("/")
    assert posixpath.normpath(path) == path or path == "/"
    assert ".." not in path.split("/")
    joined = posixpath.normpath(posixpath.join("/volume", path.lstrip("/")))
    assert joined == "/volume" or joined.startswith("/volume/")
    assert "\\" not in path and "\x00" not in path


@given(st.binary(max_size=200))
def test_no_url_escapes_the_namespace(raw: bytes) -> None:
    from urllib.parse import quote_from_bytes

    try:
        result = paths.from_url(quote_from_bytes(raw, safe="/%.")).path
    except InvalidPath:
        return
    assert ".." not in result.split("/") and "." not in result.split("/")[1:]


def test_helpers() -> None:
    assert paths.ancestors("/a/b/c") == ["/", "/a", "/a/b"]
    assert paths.parent("/a") == "/"
    assert paths.name("/a/b") == "b"
    assert paths.is_within("/a/b", "/a") and not paths.is_within("/ab", "/a")
