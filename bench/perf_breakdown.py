#!/usr/bin/env python3
"""Where the coordinator's CPU goes, from `perf script -F tid,ip,sym,dso` of a `dtx server`
recorded with --call-graph dwarf (bench/profile.sh does both). Reads stdin, prints markdown.

Each sample is attributed by its whole stack: first to a thread role (SQLite writer, SQLite readers,
I/O threads), then to one activity within it. A thread's role is that of any of its samples whose
stack reaches WriterLoop/ReaderLoop: DWARF unwinding of the writer's deep SQLite stacks often stops
short of WriterLoop, and such samples used to be counted as I/O-thread work. Categories are exclusive and sum to 100 %; the
"inclusive" lines count a sample for every pattern found anywhere in its stack.
"""
import collections
import re
import sys


def load(stream):
    """[(tid, frames)], frames leaf first as (symbol, dso)."""
    samples, cur = [], None
    for line in stream:
        if not line.strip():
            continue
        if not line[0].isspace() or re.match(r"^\s*\d+\s*$", line):  # the sample's tid line
            cur = []
            samples.append((line.split()[-1] if line.split() else "", cur))
            continue
        parts = line.strip().split(" ", 1)
        if len(parts) < 2 or cur is None:
            continue
        m = re.match(r"(.*) \(([^()]*)\)$", parts[1])
        cur.append((m.group(1), m.group(2)) if m else (parts[1], ""))
    return samples


def has(frames, pattern):
    rx = re.compile(pattern)
    return any(rx.search(sym) for sym, _ in frames)


def kernel_leaf(frames):
    return bool(frames) and "kernel" in frames[0][1]


def kernel_stack(frames):
    return " ".join(sym for sym, dso in frames if "kernel" in dso)


WRITER = [
    ("fsync at COMMIT", r"fdatasync|fsync"),
    ("WAL checkpoint", r"Checkpoint"),
    ("COMMIT: WAL frames (pwrite of the dirty pages)",
     r"sqlite3WalFrames|pagerWalFrames|sqlite3PagerCommitPhaseOne"),
    ("partial-index IN (...) -> ephemeral b-tree per row",
     r"^sqlite3BtreeOpen|^sqlite3BtreeClose|^sqlite3PagerClose|^sqlite3PagerOpen"),
    ("UPDATE statements (b-tree, indexes)", r"WriterConn::Update"),
    ("INSERT branch rows", r"InsertBranch"),
    ("INSERT global row (Create)", r"SqliteStore::Create|insert_global"),
    ("BEGIN/SAVEPOINT/RELEASE/other statements", r"sqlite3_step"),
    ("running write callbacks (post to the engine, wake I/O thread)", r"_M_invoke|std::function"),
    ("waiting / waking (futex, condvar)", r"futex|pthread_cond"),
]
READER = [
    ("waiting / waking (futex, condvar)", r"futex|pthread_cond"),
    ("Load (the engine reads the gid before creating it)", r"."),
]


def categorize(frames, role=None):
    if role == "writer" or has(frames, r"WriterLoop"):
        for name, pat in WRITER:
            if has(frames, pat):
                return "SQLite writer thread", name
        return "SQLite writer thread", "other"
    if role == "reader" or has(frames, r"ReaderLoop"):
        for name, pat in READER:
            if has(frames, pat):
                return "SQLite reader threads", name
    # I/O threads: kernel leaf by syscall, user leaf by the nearest dtx component.
    if kernel_leaf(frames):
        ks = kernel_stack(frames)
        for name, pat in [
            ("kernel: sendmsg (loopback TCP: also delivers to the peer)", r"sendmsg|sendto"),
            ("kernel: recvmsg", r"recvmsg|recvfrom"),
            ("kernel: epoll_wait", r"epoll_wait"),
            ("kernel: futex (wake/wait between threads)", r"futex"),
            ("kernel: accept/connect/close", r"accept|connect|close|shutdown"),
            ("kernel: scheduler", r"schedule|switch"),
        ]:
            if re.search(pat, ks):
                return "I/O threads", name
        return "I/O threads", "kernel: other"
    leaf = frames[0][0] if frames else ""
    malloc = re.search(r"^(malloc|free|cfree|_int_|malloc_consolidate|unlink_chunk|tcache)", leaf)
    for sym, _ in frames:
        m = re.search(r"dtx::(http::Client|http::Server|api|engine|core|store|ops|http)", sym)
        if m:
            comp = {
                "http::Client": "HTTP client (branch calls)",
                "http::Server": "HTTP server (submit)",
                "http": "HTTP (shared)",
                "api": "API: routing, JSON decode/encode",
                "engine": "engine: rounds, store calls",
                "core": "core: state machine, model copies",
                "store": "store: queueing the write",
                "ops": "metrics",
            }[m.group(1)]
            return "I/O threads", "user: " + comp + (" [in malloc/free]" if malloc else "")
    return "I/O threads", "user: Asio/Beast/libc without a dtx frame" + (
        " [in malloc/free]" if malloc else "")


INCLUSIVE = [
    ("SQLite (sqlite3_step, with the kernel I/O under it)", r"^sqlite3_step$|^Step$"),
    ("malloc/free (leaf)", None),
    ("kernel (leaf)", None),
    ("futex anywhere", r"futex"),
    ("context switches (finish_task_switch/__schedule)", r"finish_task_switch|__schedule"),
    ("Beast HTTP parser", r"beast::http::basic_parser"),
    ("Boost.JSON", r"boost::json"),
    ("spdlog", r"spdlog"),
]


def main():
    tagged = load(sys.stdin)
    samples = [frames for _, frames in tagged]
    n = len(samples)
    if n == 0:
        print("no samples")
        return 1
    roles = {}
    for tid, frames in tagged:
        if has(frames, r"WriterLoop"):
            roles[tid] = "writer"
        elif has(frames, r"ReaderLoop"):
            roles.setdefault(tid, "reader")
    by_role = collections.Counter()
    by_cat = collections.Counter()
    for tid, frames in tagged:
        role, cat = categorize(frames, roles.get(tid))
        by_role[role] += 1
        by_cat[(role, cat)] += 1
    print(f"{n} samples\n")
    print("| Thread / activity | Share of coordinator CPU |")
    print("|---|---:|")
    for role, rc in by_role.most_common():
        print(f"| **{role}** | **{100 * rc / n:.1f} %** |")
        for (r, cat), c in sorted(by_cat.items(), key=lambda kv: -kv[1]):
            if r == role and 100 * c / n >= 0.3:
                print(f"| &nbsp;&nbsp;{cat} | {100 * c / n:.1f} % |")
    print()
    print("| Inclusive | Share |")
    print("|---|---:|")
    mrx = re.compile(r"^(malloc|free|cfree|_int_malloc|_int_free|malloc_consolidate|unlink_chunk|"
                     r"__libc_malloc|__libc_free|realloc|_int_realloc|tcache)")
    for name, pat in INCLUSIVE:
        if name.startswith("malloc"):
            c = sum(1 for f in samples if any(mrx.search(s) for s, _ in f[:3]))
        elif name.startswith("kernel"):
            c = sum(1 for f in samples if kernel_leaf(f))
        else:
            c = sum(1 for f in samples if has(f, pat))
        print(f"| {name} | {100 * c / n:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
