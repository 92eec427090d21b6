#!/usr/bin/env python3
"""Commit -> in the broker, for bench/relay_bench.sh's latency part on the redis sink.

Reads `redis-cli --raw xrange orders - +` on stdin (9 lines an entry: the entry id, then
message_id, key, headers and payload, each name and value), takes the entry id's milliseconds
(Redis's clock at the XADD) and the inserting transaction's id from the payload's first 12
characters, asks PostgreSQL (argv[1]) for each transaction's commit time
(pg_xact_commit_timestamp: needs track_commit_timestamp = on) and prints p50/p99/max of
entry time - commit time over the first entry of each message id.
"""
import subprocess
import sys


def main():
    pg, rate, load = sys.argv[1:4]
    lines = sys.stdin.read().split("\n")
    seen = set()
    entries = []  # (ms, xid)
    for i in range(0, len(lines) - 8, 9):
        ms = int(lines[i].split("-")[0])
        fields = dict(zip(lines[i + 1:i + 9:2], lines[i + 2:i + 9:2]))
        if fields["message_id"] in seen:
            continue  # a re-publish (at least once): the first delivery counts
        seen.add(fields["message_id"])
        entries.append((ms, int(fields["payload"][:12])))
    if not entries:
        print("latency to the broker: no entries")
        return
    xids = sorted({x for _, x in entries})
    sql = ("select x, round(extract(epoch from pg_xact_commit_timestamp(xid(x::text::xid8))) * 1000, 3)"
           " from unnest('{" + ",".join(map(str, xids)) + "}'::bigint[]) x")
    out = subprocess.run(["psql", pg, "-qtAX", "-F", " ", "-c", sql], check=True,
                         capture_output=True, text=True).stdout
    committed = {}
    for line in out.split("\n"):
        if line.strip():
            x, t = line.split(" ")
            committed[int(x)] = float(t)
    d = sorted(ms - committed[x] for ms, x in entries)
    p = lambda q: d[min(len(d) - 1, int(q * len(d)))]
    print(f"latency commit->in the broker: {len(d)} rows at {rate}/s target: p50 {p(0.5):.1f} ms, "
          f"p99 {p(0.99):.1f} ms, max {d[-1]:.1f} ms, load {load}")


main()
