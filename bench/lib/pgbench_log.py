#!/usr/bin/env python3
"""Latency figures from pgbench's per-transaction logs (`pgbench -l [--sampling-rate R]`).

    pgbench_log.py HIST_CSV LOGFILE...

Prints one JSON line: {"samples", "p50_ms", "p90_ms", "p99_ms", "max_ms"}; writes the latency
distribution to HIST_CSV (`latency_us,count`, every distinct latency and how many sampled
transactions took it — the format bench/lib/wrk-requests.lua writes for wrk) unless it is "".
A log line is `client_id transaction_no time script_no time_epoch time_us [schedule_lag]`, with
`time` the transaction's latency in microseconds.
"""
import collections
import json
import sys


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list (as wrk and hdrhistogram report them)."""
    if not sorted_values:
        return 0
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def main() -> None:
    hist_csv, logs = sys.argv[1], sys.argv[2:]
    values = []
    for path in logs:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3:
                    values.append(int(fields[2]))
    values.sort()
    if hist_csv:
        with open(hist_csv, "w", encoding="utf-8") as f:
            f.write("latency_us,count\n")
            for value, count in sorted(collections.Counter(values).items()):
                f.write(f"{value},{count}\n")
    print(json.dumps({
        "samples": len(values),
        "p50_ms": percentile(values, 50) / 1000,
        "p90_ms": percentile(values, 90) / 1000,
        "p99_ms": percentile(values, 99) / 1000,
        "max_ms": (values[-1] if values else 0) / 1000,
    }))


if __name__ == "__main__":
    main()
