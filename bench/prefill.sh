#!/usr/bin/env bash
# Fills a dtx SQLite database directly (sqlite3 CLI, recursive CTE) with N 2-step sagas that look
# like the ones `dtx server` writes (1 global row + 4 branch rows each, same columns and encodings):
#   finished:  status succeed, both actions succeed, compensations prepared (never run), in the past;
#   submitted: status submitted, every branch prepared, next_cron_time <= now, no owner — what a
#              coordinator leaves behind when it is killed before running them; their branch URLs
#              point to PARTICIPANT (a `dtx-bench --participant-only PORT`).
# The schema is created by `dtx server` itself (started once on the file if it does not exist), so
# the rows always match the binary's schema version.
#
# Usage: bench/prefill.sh BUILD_DIR DB N finished|submitted [PARTICIPANT_BASE_URL]
#   e.g. bench/prefill.sh build /tmp/p/dtx.db 1000000 finished
#        bench/prefill.sh build /tmp/k/dtx.db 100000 submitted http://127.0.0.1:38100/busi
set -euo pipefail
BUILD=${1:?BUILD_DIR}
DB=${2:?DB}
N=${3:?N}
KIND=${4:?finished|submitted}
PART=${5:-http://127.0.0.1:9/busi}
case "$KIND" in finished | submitted) ;; *) echo "prefill: kind must be finished|submitted" >&2; exit 2 ;; esac
[[ "$N" =~ ^[0-9]+$ ]] || { echo "prefill: N must be a number" >&2; exit 2; }

if [ ! -f "$DB" ]; then
  mkdir -p "$(dirname "$DB")"
  log=$(mktemp)
  "$BUILD/tools/dtx/dtx" server --listen 127.0.0.1:0 --store "sqlite:$DB" --log-level warn >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do grep -q "ready" "$log" && break; sleep 0.1; done
  grep -q "ready" "$log" || { cat "$log" >&2; kill -9 $pid 2>/dev/null; exit 1; }
  kill -TERM $pid
  wait $pid 2>/dev/null || true
  rm -f "$log"
fi

now=$(($(date +%s%N) / 1000000))
first=$(sqlite3 "$DB" "select coalesce(max(id), 0) + 1 from trans_global")
if [ "$KIND" = finished ]; then
  # Created over the last N ms before one day ago; each took 5 ms.
  t0=$((now - 86400000 - N))
  gstatus=succeed owner=prefill
  gfinish="t + 5" gupdate="t + 5" gcron="t + 10000"
  bstatus="CASE WHEN b.op = 'action' THEN 'succeed' ELSE 'prepared' END"
  battempts="CASE WHEN b.op = 'action' THEN 1 ELSE 0 END"
  bfinish="CASE WHEN b.op = 'action' THEN t + 5 ELSE 0 END"
  bupdate="CASE WHEN b.op = 'action' THEN t + 5 ELSE t END"
else
  # Submitted over the last N ms before one minute ago; due since then (never tried).
  t0=$((now - 60000 - N))
  gstatus=submitted owner=""
  gfinish="0" gupdate="t" gcron="t"
  bstatus="'prepared'" battempts="0" bfinish="0" bupdate="t"
fi

# DELETE journal + synchronous=OFF for the bulk load only (new pages are not journaled); the file
# goes back to WAL, which is what `dtx server` sets (and checks) when it opens it.
sqlite3 "$DB" >/dev/null <<SQL
PRAGMA journal_mode=DELETE;
PRAGMA synchronous=OFF;
PRAGMA cache_size=-262144;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT $first UNION ALL SELECT i + 1 FROM n WHERE i < $first + $N - 1),
     g(i, gid, t) AS (SELECT i, printf('prefill-$KIND-%09d', i), $t0 + i - $first FROM n)
INSERT INTO trans_global (gid, trans_type, status, protocol, query_prepared, custom_data,
                          rollback_reason, result, owner, options, create_time, update_time,
                          finish_time, rollback_time, next_cron_interval, next_cron_time, retry_count)
SELECT gid, 'saga', '$gstatus', 'http', '', '', '', '', '$owner', '{"concurrent":false}', t,
       $gupdate, $gfinish, 0, 10000, $gcron, 0
FROM g;
WITH RECURSIVE n(i) AS (SELECT $first UNION ALL SELECT i + 1 FROM n WHERE i < $first + $N - 1),
     g(i, gid, t) AS (SELECT i, printf('prefill-$KIND-%09d', i), $t0 + i - $first FROM n),
     b(k, branch_id, op) AS (VALUES (1, '01', 'compensate'), (2, '01', 'action'),
                                    (3, '02', 'compensate'), (4, '02', 'action'))
INSERT INTO trans_branch_op (trans_id, gid, url, bin_data, branch_id, op, status, create_time,
                             update_time, finish_time, attempts, last_error)
SELECT tg.id, g.gid, '$PART/ok', CAST('{"amount":30}' AS BLOB), b.branch_id, b.op, $bstatus, t,
       $bupdate, $bfinish, $battempts, ''
FROM g JOIN trans_global tg ON tg.gid = g.gid CROSS JOIN b ORDER BY g.i, b.k;
COMMIT;
PRAGMA journal_mode=WAL;
SQL

