"""The results table: one row per measurement, CallFS against its peers and its targets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Target:
    """What CallFS must reach on a row: a ratio to each peer, or a ceiling on its own value."""

    min_vs_nginx: float | None = None
    min_vs_seaweed: float | None = None
    max_value: float | None = None

    def describe(self, unit: str) -> str:
        """The target in words, as the table prints it."""
        parts = []
        if self.min_vs_nginx is not None:
            parts.append(f">= {self.min_vs_nginx:.1f}x nginx")
        if self.min_vs_seaweed is not None:
            parts.append(f">= {self.min_vs_seaweed:.1f}x SeaweedFS")
        if self.max_value is not None:
            parts.append(f"< {self.max_value:g} {unit}")
        return ", ".join(parts)


@dataclass
class Row:
    """One measurement for CallFS and the peers that offer it; None where a peer does not."""

    label: str
    unit: str
    callfs: float
    nginx: float | None
    seaweed: float | None
    target: Target
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def vs_nginx(self) -> float | None:
        """CallFS over nginx (higher is better), when both were measured."""
        return _ratio(self.callfs, self.nginx)

    @property
    def vs_seaweed(self) -> float | None:
        """CallFS over SeaweedFS (higher is better), when both were measured."""
        return _ratio(self.callfs, self.seaweed)

    def misses(self) -> list[str]:
        """Each target the row misses, with the measured gap."""
        missed = []
        target = self.target
        if target.min_vs_nginx is not None and (self.vs_nginx or 0) < target.min_vs_nginx:
            missed.append(f"{self.vs_nginx or 0:.2f}x nginx < {target.min_vs_nginx:.1f}x")
        if target.min_vs_seaweed is not None and (self.vs_seaweed or 0) < target.min_vs_seaweed:
            missed.append(f"{self.vs_seaweed or 0:.2f}x SeaweedFS < {target.min_vs_seaweed:.1f}x")
        if target.max_value is not None and self.callfs >= target.max_value:
            missed.append(f"{self.callfs:.0f} {self.unit} >= {target.max_value:g}")
        if any(self.errors.values()):
            failed = ", ".join(f"{name} {count}" for name, count in self.errors.items() if count)
            missed.append(f"failed requests: {failed}")
        return missed

    def as_dict(self) -> dict[str, Any]:
        """The row for results.json."""
        data = asdict(self)
        data.update(vs_nginx=self.vs_nginx, vs_seaweed=self.vs_seaweed, met=not self.misses())
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
    return f"{value:.1f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


HEADER = ("", "CallFS", "nginx", "SeaweedFS", "CallFS/nginx", "CallFS/SeaweedFS", "target", "met")


def table(rows: list[Row]) -> str:
    """The rows as a plain-text table with aligned columns."""
    lines = [HEADER]
    for row in rows:
        lines.append(
            (
                f"{row.label} ({row.unit})",
                _number(row.callfs),
                _number(row.nginx),
                _number(row.seaweed),
                _times(row.vs_nginx),
                _times(row.vs_seaweed),
                row.target.describe(row.unit),
                "yes" if not row.misses() else "NO",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    text = []
    for number, line in enumerate(lines):
        cells = [
            cell.ljust(width) if i in (0, 6) else cell.rjust(width)
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
            _number(row.callfs),
            _number(row.nginx),
            _number(row.seaweed),
            _times(row.vs_nginx),
            _times(row.vs_seaweed),
            row.target.describe(row.unit),
            "yes" if not row.misses() else "**no**",
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
