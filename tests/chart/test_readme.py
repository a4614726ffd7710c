"""The chart's README: generated from values.yaml by scripts/chart-readme.py, and current."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.chart.rendering import CHART, ROOT

pytestmark = pytest.mark.chart

SCRIPT = ROOT / "scripts" / "chart-readme.py"


@pytest.fixture(scope="module")
def chart_readme() -> ModuleType:
    """scripts/chart-readme.py as a module (its name is not an importable one)."""
    spec = importlib.util.spec_from_file_location("chart_readme", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_committed_readme_equals_a_fresh_generation() -> None:
    fresh = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    committed = (CHART / "README.md").read_text()
    assert committed == fresh, "charts/callfs/README.md is stale: run `make chart-readme`"


def test_readme_lists_every_documented_value_with_its_default(chart_readme: ModuleType) -> None:
    readme = (CHART / "README.md").read_text()
    text = (CHART / "values.yaml").read_text()
    values = chart_readme.documented(text)
    assert len(values) > 150
    keys = [line.split(" | ")[0].removeprefix("| ") for line in readme.splitlines()]
    for value in values:
        assert ".".join(value.path) in keys
    assert "| storageNode.persistentVolumeClaimRetentionPolicy | object | " in readme
    assert '| image.digest | string | `""` | Image digest' in readme
    assert "| networkPolicy.egress.enabled | bool | `false` |" in readme


def test_the_generator_reads_comments_keys_and_defaults(
    chart_readme: ModuleType, tmp_path: Path
) -> None:
    text = """\
# A file comment, not a value's.
nameOverride: ""

image:
  # -- Repository
  # of the image.
  repository: callfs
  # -- Tag | or digest.
  tag: "1.0"
# -- Every alert.
alerts:
  down:
    enabled: true
# -- Peers.
peers:
  - namespaceSelector:
      matchLabels:
        team: a
# -- Replicas.
replicas: 2
"""
    values = chart_readme.documented(text)
    assert [(".".join(v.path), v.description) for v in values] == [
        ("image.repository", "Repository of the image."),
        ("image.tag", "Tag | or digest."),
        ("alerts", "Every alert."),
        ("peers", "Peers."),
        ("replicas", "Replicas."),
    ]
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "values.yaml").write_text(text)
    meta = {"description": "d", "version": "1", "appVersion": "2", "kubeVersion": ">=1.30"}
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    rows = chart_readme.readme(chart).splitlines()
    assert '| image.tag | string | `"1.0"` | Tag \\| or digest. |' in rows
    assert '| alerts | object | `{"down":{"enabled":true}}` | Every alert. |' in rows
    assert (
        '| peers | list | `[{"namespaceSelector":{"matchLabels":{"team":"a"}}}]` | Peers. |' in rows
    )
    assert "| replicas | int | `2` | Replicas. |" in rows


def test_chart_metadata_names_home_sources_icon_and_maintainers() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["home"].startswith("https://")
    assert meta["sources"] and all(url.startswith("https://") for url in meta["sources"])
    assert meta["icon"].startswith("https://")
    assert meta["icon"].endswith("docs/images/callfs-icon.svg")
    assert (ROOT / "docs" / "images" / "callfs-icon.svg").is_file()
    assert all(m["name"] for m in meta["maintainers"])
