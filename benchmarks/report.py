"""The results table: one row per measurement, CallFS against its peers and its targets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Target:
    """What CallFS must reach on a row: a ratio to each peer, a floor or a ceiling on its
    own value, or nothing (a row for information).
    """

    min_vs_nginx: float | None = None
    min_vs_seaweed: float | None = None
    max_value: float | None = None
    min_value: float | None = None

    def describe(self, unit: str) -> str:
        """The target in words, as the table prints it."""
        parts = []
        if self.min_vs_nginx is not None:
            parts.append(f">= {self.min_vs_nginx:.1f}x nginx")
        if self.min_vs_seaweed is not None:
            parts.append(f">= {self.min_vs_seaweed:.1f}x SeaweedFS")
        if self.max_value is not None:
            parts.append(f"< {self.max_value:g} {unit}")
        if self.min_value is not None:
            parts.append(
                f"> {self.min_value:g}x" if unit == "x" else f"> {self.min_value:g} {unit}"
            )
        return ", ".join(parts)


@dataclass
class Row:
    """One measurement for CallFS and the peers that offer it; None where a peer does not.

    A rate row also carries the CPU seconds CallFS spent per request; a local cluster row
    the CPU share of each gateway meanwhile (1.0: one core busy). A row of seconds,
    milliseconds or bytes is ``lower_is_better``: its ratios are then the peer's figure
    over CallFS's, so on every row a ratio above 1.0 means CallFS does better.
    """

    label: str
    unit: str
    callfs: float
    nginx: float | None
    seaweed: float | None
    target: Target
    errors: dict[str, int] = field(default_factory=dict)
    cpu_seconds_per_request: float | None = None
    cpu_shares: dict[str, float] = field(default_factory=dict)
    lower_is_better: bool = False

    @property
    def vs_nginx(self) -> float | None:
        """How CallFS compares with nginx (above 1.0: better), when both were measured."""
        return self._versus(self.nginx)

    @property
    def vs_seaweed(self) -> float | None:
        """How CallFS compares with SeaweedFS (above 1.0: better), when both were measured."""
        return self._versus(self.seaweed)

    def _versus(self, theirs: float | None) -> float | None:
        """CallFS over the peer, or the peer over CallFS where lower is better."""
        if self.lower_is_better:
            return None if theirs is None else _ratio(theirs, self.callfs)
        return _ratio(self.callfs, theirs)

    @property
    def judged(self) -> bool:
        """Whether the row has a target it can be held to (a ratio needs its peer measured)."""
        target = self.target
        return (
            (target.min_vs_nginx is not None and self.nginx is not None)
            or (target.min_vs_seaweed is not None and self.seaweed is not None)
            or target.max_value is not None
            or target.min_value is not None
            or any(self.errors.values())
        )

    def misses(self) -> list[str]:
        """Each target the row misses, with the measured gap (a peer not measured is not)."""
        missed = []
        target = self.target
        if (
            target.min_vs_nginx is not None
            and self.nginx is not None
            and (self.vs_nginx or 0) < target.min_vs_nginx
        ):
            missed.append(f"{self.vs_nginx or 0:.2f}x nginx < {target.min_vs_nginx:.1f}x")
        if (
            target.min_vs_seaweed is not None
            and self.seaweed is not None
            and (self.vs_seaweed or 0) < target.min_vs_seaweed
        ):
            missed.append(f"{self.vs_seaweed or 0:.2f}x SeaweedFS < {target.min_vs_seaweed:.1f}x")
        if target.max_value is not None and self.callfs >= target.max_value:
            missed.append(f"{_number(self.callfs)} {self.unit} >= {target.max_value:g}")
        if target.min_value is not None and self.callfs <= target.min_value:
            missed.append(f"{self.callfs:.2f} {self.unit} <= {target.min_value:g}")
        if any(self.errors.values()):
            failed = ", ".join(f"{name} {count}" for name, count in self.errors.items() if count)
            missed.append(f"failed requests: {failed}")
        return missed

    def as_dict(self) -> dict[str, Any]:
        """The row for results.json."""
        data = asdict(self)
        data.update(
            vs_nginx=self.vs_nginx,
            vs_seaweed=self.vs_seaweed,
            met=not self.misses() if self.judged else None,
        )
        data["target"] = self.target.describe(self.unit)
        data["misses"] = self.misses()
        return data


def _ratio(ours: float, theirs: float | None) -> float | None:
    if theirs is None or theirs <= 0:
        return None
    return ours / theirs


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1 or value == 0:
        return f"{value:.1f}"
    return f"{value:.2g}"  # 0.043 s, not 0.0


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _value(row: Row) -> str:
    """CallFS's figure: a ratio (unit ``x``) as ``0.85x``, anything else as a number."""
    return _times(row.callfs) if row.unit == "x" else _number(row.callfs)


def _cpu(row: Row) -> str:
    """CallFS's CPU during the row: ``1.52 ms/req`` and/or each gateway's share of a core."""
    parts = []
    if row.cpu_seconds_per_request is not None:
        parts.append(f"{row.cpu_seconds_per_request * 1000:.2f} ms/req")
    if row.cpu_shares:
        parts.append(", ".join(f"{name} {share:.0%}" for name, share in row.cpu_shares.items()))
    return "; ".join(parts) or "-"


def _met(row: Row, no: str) -> str:
    """``yes``, ``no`` (as the caller spells it), or ``-`` for a row with no target to hold."""
    if not row.judged:
        return "-"
    return "yes" if not row.misses() else no


HEADER = (
    "",
    "CallFS",
    "nginx",
    "SeaweedFS",
    "CallFS/nginx",
    "CallFS/SeaweedFS",
    "target",
    "met",
    "CallFS CPU",
)


def table(rows: list[Row]) -> str:
    """The rows as a plain-text table with aligned columns."""
    lines = [HEADER]
    for row in rows:
        lines.append(
            (
                f"{row.label} ({row.unit})",
                _value(row),
                _number(row.nginx),
                _number(row.seaweed),
                _times(row.vs_nginx),
                _times(row.vs_seaweed),
                row.target.describe(row.unit),
                _met(row, "NO"),
                _cpu(row),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    text = []
    for number, line in enumerate(lines):
        cells = [
            cell.ljust(width) if i in (0, 6, 8) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        text.append("  ".join(cells).rstrip())
        if number == 0:
            text.append("  ".join("-" * width for width in widths))
    return "\n".join(text)


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table, for docs/benchmarks.md."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        cells = (
            f"{row.label} ({row.unit})",
            _value(row),
            _number(row.nginx),
            _number(row.seaweed),
            _times(row.vs_nginx),
            _times(row.vs_seaweed),
            row.target.describe(row.unit),
            _met(row, "**no**"),
            _cpu(row),
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
