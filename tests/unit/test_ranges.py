"""Range header parsing."""

from __future__ import annotations

import pytest
from callfs_gateway.ranges import parse_range
from hypothesis import given
from hypothesis import strategies as st

from callfs.errors import RangeNotSatisfiable


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=2-", 10, (2, 9)),
        ("bytes=-4", 10, (6, 9)),
        ("bytes=-40", 10, (0, 9)),
        ("bytes=5-99", 10, (5, 9)),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
        ("bytes=x-1", 10, None),
        ("bytes=5-2", 10, None),
    ],
)
def test_parse(header: str | None, size: int, span: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == span


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


@pytest.mark.parametrize(
    "header",
    [
        "bytes=\xb2-",  # superscript two: str.isdigit() says yes, int() says no
        "bytes=-\xb2",
        "bytes=0-\xb2",
        "bytes=\u0661-",  # ARABIC-INDIC DIGIT ONE
        "bytes=\uff11-\uff12",  # FULLWIDTH DIGIT ONE, TWO
        "bytes=+1-2",
        "bytes=1_0-20",
        "bytes=" + "9" * 5000 + "-",
        "bytes=-" + "9" * 5000,
        "bytes=0-" + "9" * 5000,
        "bytes=" + "1" * 20 + "-",
    ],
)
def test_non_ascii_digits_and_overlong_numbers_are_malformed(header: str) -> None:
    assert parse_range(header, 10) is None


def test_nineteen_digits_are_still_parsed() -> None:
    assert parse_range("bytes=0-" + "9" * 19, 10) == (0, 9)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=" + "9" * 19 + "-", 10)


@given(header=st.text(max_size=40), size=st.integers(min_value=0, max_value=2**63))
def test_any_header_gives_a_span_none_or_416(header: str, size: int) -> None:
    _check_outcome("bytes=" + header, size)
    _check_outcome(header, size)


@given(
    first=st.text(alphabet=st.characters(categories=["Nd", "No"]), max_size=25),
    last=st.text(alphabet=st.characters(categories=["Nd", "No"]), max_size=25),
    size=st.integers(min_value=0, max_value=2**63),
)
def test_any_digits_give_a_span_none_or_416(first: str, last: str, size: int) -> None:
    _check_outcome(f"bytes={first}-{last}", size)


def _check_outcome(header: str, size: int) -> None:
    try:
        span = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if span is not None:
        start, end = span
        assert 0 <= start <= end < size


@pytest.mark.parametrize("header", ["bytes=\xa00-1", "bytes=0-1\x85", "\xa0bytes=0-1"])
def test_only_space_and_tab_are_optional_whitespace(header: str) -> None:
    assert parse_range(header, 10) is None


def test_space_and_tab_around_the_range_are_allowed() -> None:
    assert parse_range(" bytes = \t0-1 ", 10) == (0, 1)
