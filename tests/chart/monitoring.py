"""What the chart's alerts and dashboard query, checked against what CallFS exports.

:func:`selectors` reads the metric selectors out of a PromQL expression (a tokenizer that is
enough for the queries we write, Grafana variables included). :func:`exported` collects the
series each role's registry can expose, named and labelled as Prometheus stores them after a
scrape through the chart's ServiceMonitor. :func:`problems` says where the first misses the
second.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from callfs_storage_node.metrics import NodeMetrics
from callfs_storage_node.volume import Volume
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from callfs.metrics import Metrics

ROLES = ("gateway", "link-service", "storage-node")
# The labels Prometheus puts on every series of a ServiceMonitor target; a scraped label of
# the same name is kept as exported_<name> (honorLabels is off).
TARGET_LABELS = frozenset(
    {"namespace", "job", "instance", "pod", "service", "endpoint", "container"}
)
# Series Prometheus writes itself for every target.
SCRAPE_SERIES = frozenset({"up"})

# Series names a family of each type exposes, and the label each one adds.
_SERIES = {
    "counter": (("_total", None),),
    "gauge": (("", None),),
    "histogram": (("_bucket", "le"), ("_sum", None), ("_count", None)),
    "gaugehistogram": (("_bucket", "le"), ("_gsum", None), ("_gcount", None)),
    "summary": (("", "quantile"), ("_sum", None), ("_count", None)),
    "info": (("_info", None),),
    "stateset": (("", None),),
    "unknown": (("", None),),
}

Exported = dict[str, dict[str, frozenset[str]]]
"""Role -> series name -> the label names its series carry in Prometheus."""


def exported(volume_root: Path) -> Exported:
    """What each role exports: the gateway and link-service one :class:`Metrics`, a storage
    node one :class:`NodeMetrics` watching a real volume (its gauges appear after a walk)."""
    web = Metrics()
    node = NodeMetrics()
    volume_root.mkdir(parents=True, exist_ok=True)
    node.watch(Volume(volume_root))
    asyncio.run(node.refresh())
    web_series = _series(web.registry, vars(web).values())
    node_series = _series(node.registry, vars(node).values())
    return {"gateway": web_series, "link-service": web_series, "storage-node": node_series}


def _series(registry: CollectorRegistry, owned: Iterable[object]) -> dict[str, frozenset[str]]:
    families: dict[str, tuple[str, set[str]]] = {}
    for family in registry.collect():
        labels = {name for sample in family.samples for name in sample.labels}
        families[family.name] = (family.type, labels)
    for wrapper in owned:
        if isinstance(wrapper, MetricWrapperBase):
            # A labelled family with no child yet has no sample to read its labels from;
            # prometheus_client keeps a wrapper's label names only here.
            for family in wrapper.describe():
                families[family.name][1].update(wrapper._labelnames)
    series: dict[str, frozenset[str]] = {}
    for name, (kind, labels) in families.items():
        scraped = {f"exported_{label}" if label in TARGET_LABELS else label for label in labels}
        for suffix, extra in _SERIES[kind]:
            added = {extra} if extra else set()
            series[name + suffix] = frozenset(
                (scraped - {"le", "quantile"}) | added | TARGET_LABELS
            )
    return series


@dataclass(frozen=True)
class Selector:
    """One vector selector: a metric name and its label matchers (label -> (operator, value))."""

    name: str
    matchers: dict[str, tuple[str, str]] = field(default_factory=dict)


_TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<variable>\$\{\w+\}|\$\w+|\[\[\w+\]\])
  | (?P<number>\.?[0-9][0-9A-Za-z_.]*)
  | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<operator>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}\[\]:@])
  | (?P<space>\s+)
    """,
    re.VERBOSE,
)
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)
_CLOSING = {"(": ")", "[": "]", "{": "}"}

Token = tuple[str, str]


def tokens(expr: str) -> list[Token]:
    """``expr``'s tokens as (kind, text), spaces left out.

    Raises:
        ValueError: a character no PromQL token starts with.
    """
    found: list[Token] = []
    position = 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read {expr[position:]!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            found.append((kind, match.group()))
        position = match.end()
    return found


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of ``expr``: names of functions and aggregations, keywords,
    grouping label lists, ranges, numbers and strings are not selectors."""
    toks = tokens(expr)
    found: list[Selector] = []
    index = 0
    while index < len(toks):
        kind, text = toks[index]
        following = toks[index + 1][1] if index + 1 < len(toks) else ""
        if kind == "name" and text in _GROUPING:
            index = _after(toks, index + 1) if following == "(" else index + 1
        elif kind == "name" and (
            text.lower() in _KEYWORDS or text in _AGGREGATIONS or following == "("
        ):
            index += 1
        elif text == "[":
            index = _after(toks, index)
        elif kind == "name" or text == "{":
            name = text if kind == "name" else ""
            index += 1 if kind == "name" else 0
            matchers: dict[str, tuple[str, str]] = {}
            if index < len(toks) and toks[index][1] == "{":
                matchers, index = _matchers(toks, index)
            if not name:
                name = matchers.pop("__name__", ("=", ""))[1]
            found.append(Selector(name, matchers))
        else:
            index += 1
    return found


def _after(toks: list[Token], opening: int) -> int:
    """The index just past the bracket that closes the one at ``opening``."""
    opener = toks[opening][1]
    depth = 0
    for index in range(opening, len(toks)):
        if toks[index][1] == opener:
            depth += 1
        elif toks[index][1] == _CLOSING[opener]:
            depth -= 1
            if depth == 0:
                return index + 1
    raise ValueError(f"unclosed {opener!r}")


def _matchers(toks: list[Token], opening: int) -> tuple[dict[str, tuple[str, str]], int]:
    """The label matchers of the ``{...}`` at ``opening``, and the index past it."""
    matchers: dict[str, tuple[str, str]] = {}
    index = opening + 1
    while toks[index][1] != "}":
        (label_kind, label), (_, operator), (value_kind, value) = toks[index : index + 3]
        if label_kind != "name" or value_kind != "string":
            raise ValueError(f"cannot read the matcher at {label!r}")
        matchers[label] = (operator, _unquoted(value))
        index += 3
        if toks[index][1] == ",":
            index += 1
    return matchers, index + 1


def _unquoted(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def problems(expr: str, series: Exported) -> list[str]:
    """What in ``expr`` no role exports: a series name, a label, a `job` that is no role, or
    a series asked of a `job` (role) that does not export it."""
    found: list[str] = []
    for selector in selectors(expr):
        roles = _roles(selector, found)
        if selector.name in SCRAPE_SERIES:
            labels: set[str] = set(TARGET_LABELS)
        else:
            exporting = [role for role in roles if selector.name in series[role]]
            if not exporting:
                found.append(f"{selector.name} is not exported by {' or '.join(roles)}")
                continue
            found += [
                f"{selector.name} is not exported by {role}"
                for role in roles
                if role not in exporting and len(roles) < len(ROLES)
            ]
            labels = set().union(*(series[role][selector.name] for role in exporting))
        found += [
            f"{selector.name} has no label {label}"
            for label in selector.matchers
            if label not in labels
        ]
    return found


def _roles(selector: Selector, found: list[str]) -> list[str]:
    """The roles a selector's `job` matcher names (every role without one)."""
    operator, value = selector.matchers.get("job", ("=~", "|".join(ROLES)))
    named = value.split("|") if operator == "=~" else [value] if operator == "=" else []
    if not named:
        return list(ROLES)
    unknown = [job for job in named if job not in ROLES]
    found += [f"{selector.name}: job {job!r} is no CallFS role" for job in unknown]
    return [job for job in named if job in ROLES] or list(ROLES)
