#!/usr/bin/env python3
"""Latency figures from pgbench's per-transaction logs (`pgbench -l [--sampling-rate R]`).

    pgbench_log.py [--expected-interval-us N] HIST_CSV LOGFILE...

Prints one JSON line: {"samples", "p50_ms", "p90_ms", "p99_ms", "max_ms"}; writes the latency
distribution to HIST_CSV (`latency_us,count`, every distinct latency and how many sampled
transactions took it — the format bench/lib/wrk-requests.lua writes for wrk) unless it is "".
A log line is `client_id transaction_no time script_no time_epoch time_us [schedule_lag]`, with
`time` the transaction's latency in microseconds.

With --expected-interval-us (each client's mean time per transaction: clients × 10⁶ / tps), the
line also holds "corrected": p50, p90 and p99 after the correction for coordinated omission that
wrk applies to its own figures before reporting them (wrk.c, `stats_correct`): every latency L of
at least twice the interval N adds the samples L − N, L − 2N, … down to just above N, the requests
a client that sent on schedule would have had waiting behind it. wrk's p99 for the registry is
corrected so; pgbench's raw p99 beside it compared a corrected figure with an uncorrected one
(2026-12-04, one connection: `pgbench -S` raw p99 0.26 ms, corrected 2.25 ms; the registry's
token authenticate 2.50 ms by wrk). The samples are pgbench's sampled ones, each corrected as wrk
corrects every request, which keeps the proportions.
"""
import collections
import json
import sys


def corrected(counts, interval):
    """wrk's `stats_correct` on a histogram {latency_us: count}."""
    out = collections.Counter(counts)
    for value, count in counts.items():
        if value >= 2 * interval:
            m = value - interval
            while m > interval:
                out[m] += count
                m -= interval
    return out


def percentile(counts, p):
    """Nearest-rank percentile of a histogram {value: count} (as wrk and hdrhistogram report
    them)."""
    total = sum(counts.values())
    if not total:
        return 0
    rank, seen = max(1, -(-total * p // 100)), 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return value
    return 0


def main() -> None:
    args = sys.argv[1:]
    interval = None
    if args[:1] == ["--expected-interval-us"]:
        interval, args = max(1, int(float(args[1]))), args[2:]
    hist_csv, logs = args[0], args[1:]
    counts = collections.Counter()
    for path in logs:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3:
                    counts[int(fields[2])] += 1
    if hist_csv:
        with open(hist_csv, "w", encoding="utf-8") as f:
            f.write("latency_us,count\n")
            for value, count in sorted(counts.items()):
                f.write(f"{value},{count}\n")
    out = {
        "samples": sum(counts.values()),
        **{f"p{p}_ms": percentile(counts, p) / 1000 for p in (50, 90, 99)},
        "max_ms": max(counts, default=0) / 1000,
    }
    if interval is not None:
        fixed = corrected(counts, interval)
        out["corrected"] = {
            "expected_interval_us": interval,
            **{f"p{p}_ms": percentile(fixed, p) / 1000 for p in (50, 90, 99)},
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
