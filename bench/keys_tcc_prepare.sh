#!/usr/bin/env bash
# Business keys of tcc (docs/tcc.md "Business keys"): what a key costs a tcc's prepare, and how
# fast a waiting prepare answers once the holder ends. Starts `dtx server` on a fresh SQLite store
# (default --cron-interval 1), then, over one keep-alive connection per client:
#  - cost: interleaved A/B pairs of PAIRS x N sequential prepares, A without keys, B each on a
#    fresh (free) key; prints each pair's median µs per prepare and the B/A ratio;
#  - hand-over: ROUNDS times, a holder prepares key k, a second client's prepare on k waits, the
#    holder submits with wait_result (no branches: it is final at the answer); prints the time
#    from the holder's submit answer to the waiter's 200 (p50, max).
# Usage: bench/keys_tcc_prepare.sh [BUILD_DIR]   (env PAIRS=5 N=300 ROUNDS=30)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
DIR=$(mktemp -d /tmp/dtx-keys-tcc.XXXXXX)
"$BUILD/tools/dtx/dtx" server --listen 127.0.0.1:0 --store "sqlite:$DIR/dtx.db" --log-level warn \
  >"$DIR/server.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do grep -qs "ready" "$DIR/server.log" && break; sleep 0.1; done
PORT=$(grep -o 'listening on [0-9.]*:[0-9]*' "$DIR/server.log" | sed 's/.*://')
[ -n "$PORT" ] || { cat "$DIR/server.log"; exit 1; }
PORT=$PORT PAIRS=${PAIRS:-5} N=${N:-300} ROUNDS=${ROUNDS:-30} python3 - <<'EOF'
import http.client, json, os, statistics, threading, time
port = int(os.environ["PORT"]); pairs = int(os.environ["PAIRS"]); n = int(os.environ["N"])
rounds = int(os.environ["ROUNDS"])
def conn():
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)
def post(c, op, body):
    c.request("POST", "/api/dtmsvr/" + op, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse(); r.read(); return r.status
c = conn(); seq = [0]
def batch(keys):
    out = []
    for _ in range(n):
        seq[0] += 1
        body = {"gid": f"b-{seq[0]}", "trans_type": "tcc"}
        if keys: body["business_keys"] = [f"free:{seq[0]}"]
        t = time.perf_counter(); s = post(c, "prepare", body); out.append(time.perf_counter() - t)
        assert s == 200, s
    return statistics.median(out) * 1e6
ratios = []
for p in range(pairs):
    a = batch(False); b = batch(True); ratios.append(b / a)
    print(f"pair {p+1}: no keys {a:.0f} us, one free key {b:.0f} us, ratio {b/a:.2f}")
print(f"prepare cost ratio (keys/no keys) median of {pairs} pairs: {statistics.median(ratios):.2f}")
gaps = []
for i in range(rounds):
    k = f"hot:{i}"; hc = conn(); wc = conn()
    assert post(hc, "prepare", {"gid": f"h-{i}", "trans_type": "tcc", "business_keys": [k]}) == 200
    got = {}
    def wait():
        got["s"] = post(wc, "prepare", {"gid": f"w-{i}", "trans_type": "tcc", "business_keys": [k]})
        got["t"] = time.perf_counter()
    th = threading.Thread(target=wait); th.start(); time.sleep(0.05)
    assert post(hc, "submit", {"gid": f"h-{i}", "trans_type": "tcc", "wait_result": True}) == 200
    t0 = time.perf_counter(); th.join(); assert got["s"] == 200, got
    gaps.append((got["t"] - t0) * 1e3)
gaps.sort()
print(f"hand-over (holder final -> waiter's 200) over {rounds} rounds: p50 {statistics.median(gaps):.1f} ms, max {gaps[-1]:.1f} ms")
EOF
