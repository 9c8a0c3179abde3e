#!/usr/bin/env bash
# Server figures of DESIGN §8 on loopback: probe latency under wrk, time to readiness after
# start, and the latency from `POST /api/v1/workflows/{id}/runs` to the first `node_started`.
# Prints one JSON object per line. Not a test: numbers go in docs/benchmarks.md ("Server").
#
#   scripts/bench-server.sh [DATABASE_URL]     # default: a fresh SQLite file per server start
#
# MAESTRO_SERVER_BIN=PATH skips the build and measures that binary; BENCH_DURATION (default 10s)
# is the length of each wrk run.
#
# Needs `wrk` (Debian: `apt-get install -y wrk`) and python3. Debian's wrk has no fixed-rate
# mode (that is wrk2's `-R`), so the "fixed rate" runs pace each connection with wrk's Lua
# `delay()`: 29 connections each waiting 5 ms between a response and the next request give
# about 5,000 requests/s; the achieved rate is printed next to the percentiles.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
database_url="${1:-}"
duration="${BENCH_DURATION:-10s}"

command -v wrk >/dev/null || { echo "wrk is missing (apt-get install -y wrk)" >&2; exit 1; }
if [ -n "${MAESTRO_SERVER_BIN:-}" ]; then
  bin="$MAESTRO_SERVER_BIN" # an already built server (no build)
else
  cargo build --quiet --release -p maestro-server
  bin=target/release/maestro-server
fi
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a server on a fresh database, under the command prefix in $pin_server (e.g. taskset);
# prints "PID PORT SECONDS_TO_READY".
pin_server=""
start_server() {
  local port url
  port="$(free_port)"
  url="${database_url:-sqlite://$work/$port.db}"
  python3 - "$bin" "$port" "$url" $pin_server <<'EOF'
import http.client, os, subprocess, sys, time
bin, port, url, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
env = dict(os.environ, MAESTRO_BIND=f"127.0.0.1:{port}", DATABASE_URL=url, RUST_LOG="error")
t0 = time.monotonic()
p = subprocess.Popen(prefix + [bin, "serve"], env=env, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, start_new_session=True)
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/health/ready")
        if c.getresponse().status == 200:
            break
    except OSError:
        pass
    if time.monotonic() - t0 > 30:
        sys.exit("not ready within 30 s")
    time.sleep(0.002)
print(p.pid, port, f"{time.monotonic() - t0:.4f}")
EOF
}

# 1. Time to readiness from process spawn, on an empty database (5 starts).
ready_times=()
for _ in 1 2 3 4 5; do
  read -r pid port secs < <(start_server)
  ready_times+=("$secs")
  kill "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  [ -n "$database_url" ] && break # one shared database: only the first start is on an empty one
done
python3 -c 'import json,sys; t=sorted(map(float,sys.argv[1:])); print(json.dumps({"bench":"time_to_ready","starts":len(t),"min_ms":round(t[0]*1e3,1),"median_ms":round(t[len(t)//2]*1e3,1),"max_ms":round(t[-1]*1e3,1)}))' "${ready_times[@]}"

# 2. Probe latency under wrk.
read -r pid port _ < <(start_server)
pids+=("$pid")
base="http://127.0.0.1:$port"
cat >"$work/pace.lua" <<'EOF'
function delay() return 5 end
EOF
wrk_json() { # NAME PATH WRK_ARGS…
  local name="$1" path="$2"; shift 2
  $pin_wrk wrk "$@" -d "$duration" --latency "$base$path" | python3 -c '
import json, re, sys
name, path, args = sys.argv[1], sys.argv[2], sys.argv[3]
out = sys.stdin.read()
def ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
pct = {p: round(ms(v, u), 3) for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
errors = re.search(r"Socket errors: (.*)", out)
print(json.dumps({"bench": name, "path": path, "wrk": args, "requests_per_s": round(rps),
                  "p50_ms": pct.get("50"), "p90_ms": pct.get("90"), "p99_ms": pct.get("99"),
                  "non_2xx": int(non2xx.group(1)) if non2xx else 0,
                  "socket_errors": errors.group(1) if errors else None}))
' "$name" "$path" "$*"
}
pin_wrk=""
for path in /health/live /health/ready; do
  wrk_json probe_max_rate "$path" -t 2 -c 8
  wrk_json probe_paced_5000 "$path" -t 2 -c 29 -s "$work/pace.lua"
done
# The same paced load with the server on CPU 0 and wrk on CPU 1, so that the load generator
# and the rest of the machine do not preempt the server (a 2-core machine shared with builds).
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin_server="taskset -c 0" pin_wrk="taskset -c 1"
  read -r pinned_pid pinned_port _ < <(start_server)
  pids+=("$pinned_pid")
  base_unpinned="$base" base="http://127.0.0.1:$pinned_port"
  for path in /health/live /health/ready; do
    wrk_json probe_paced_5000_pinned "$path" -t 1 -c 29 -s "$work/pace.lua"
  done
  kill "$pinned_pid"
  base="$base_unpinned" pin_server="" pin_wrk=""
fi

# 3. POST …/runs → first node_started, sequentially over 200 runs.
python3 - "$port" <<'EOF'
import datetime, http.client, json, sys, time
port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
def call(method, path, body=None):
    c.request(method, path, body=None if body is None else json.dumps(body),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"null")
definition = {"id": "bench", "nodes": [
    {"id": "first", "executor": "noop"},
    {"id": "second", "executor": "noop", "depends_on": ["first"]}]}
status, _ = call("POST", "/api/v1/workflows", definition)
assert status in (200, 201), status
lat = []
for _ in range(200):
    sent = datetime.datetime.now(datetime.timezone.utc)
    status, run = call("POST", "/api/v1/workflows/bench/runs", {"inputs": {}})
    assert status == 202, (status, run)
    while True:
        _, ev = call("GET", f"/api/v1/runs/{run['run_id']}/events?after=0")
        started = [e for e in ev["events"] if e["type"] == "node_started"]
        done = any(e["type"] == "workflow_completed" for e in ev["events"])
        if started and done:
            break
        time.sleep(0.001)
    at = datetime.datetime.fromisoformat(started[0]["timestamp"].replace("Z", "+00:00"))
    lat.append((at - sent).total_seconds() * 1e3)
lat.sort()
q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 2)
print(json.dumps({"bench": "post_run_to_first_node_started", "runs": len(lat),
                  "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "max_ms": round(lat[-1], 2)}))
EOF
