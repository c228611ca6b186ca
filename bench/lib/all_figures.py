#!/usr/bin/env python3
"""Assembles bench/all.sh's per-step raw figures into the tables bench/plot draws.

    all_figures.py RESULTS_DIR

Reads RESULTS_DIR/curve-<N>/ (bench/registry.sh's BENCH_RESULTS of each size of the sessions
curve) and RESULTS_DIR/registry/sweep.jsonl; writes

    RESULTS_DIR/curve.csv  sessions,series,p50_ms,p99_ms,rps,requests,db_lookups,errors
                           (the median over a size's runs, BENCH_REPEATS)
    RESULTS_DIR/curve-runs.csv  sessions,series,run,p50_ms,p99_ms,rps (every run)
    RESULTS_DIR/curve-pairs.csv  sessions,series,run,first,p99_ms,reference_sessions,
                           reference_p99_ms,ratio,started_first,rps,reference_rps (every run
                           beside its same-minute reference run, bench/registry.sh
                           BENCH_REFERENCE_SESSIONS; started_first: which process the repeat
                           started first, when both were started again before it)
    RESULTS_DIR/sweep.csv  connections,series,rps,p50_ms,p99_ms,errors,p99_corrected_ms

Series names are the ones the plots and the summary show. A size whose run ended before it wrote
its figures is left out; one whose load generator counted errors is kept, with its error count
(bench/registry.sh then exits 1 and all.sh marks the size failed).
"""
import csv
import json
import os
import re
import statistics
import sys

TOKEN = "authenticate by token"
JWT = "authenticate by JWT"
# The same workloads at a fixed offered load below saturation (bench/registry.sh BENCH_PACED_DELAY_MS).
TOKEN_PACED = "authenticate by token at a fixed rate"
JWT_PACED = "authenticate by JWT at a fixed rate"
SERIES = {"token": TOKEN, "jwt": JWT, "token-paced": TOKEN_PACED, "jwt-paced": JWT_PACED}
LOOKUP = "token-hash statement in Postgres"
PGBENCH = "pgbench -S (anchor)"


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def curve_rows(res, repeats):
    """The curve's rows (each size's median over its runs); every run's own figures go to
    `repeats`."""
    rows = []
    sizes = sorted(
        int(m.group(1))
        for d in os.listdir(res)
        if (m := re.fullmatch(r"curve-(\d+)", d)) and os.path.isfile(os.path.join(res, d, "meta.json"))
    )
    for n in sizes:
        d = os.path.join(res, f"curve-{n}")
        runs = {r["name"]: r for r in load_jsonl(os.path.join(d, "runs.jsonl"))}
        lookups = None
        if os.path.exists(os.path.join(d, "token.batching.json")):
            lookups = load_json(os.path.join(d, "token.batching.json")).get("db_lookups")
        for name, series in SERIES.items():
            # The run and its repeats (BENCH_REPEATS: token-r2, …): the median of each figure
            # (the database lookups are the first run's), the sum of the errors.
            reps = [r for k, r in runs.items() if k == name or re.fullmatch(rf"{name}-r\d+", k)]
            if reps:
                med = lambda key: statistics.median(r[key] for r in reps)  # noqa: E731
                rows.append([n, series, med("p50_ms"), med("p99_ms"), round(med("rps")),
                             round(med("requests")),
                             lookups if name == "token" else 0, sum(r["errors"] for r in reps)])
                repeats.extend([n, series, i + 1, r["p50_ms"], r["p99_ms"], round(r["rps"])]
                               for i, r in enumerate(reps))
        for file, series in (("lookup.json", LOOKUP), ("pgbench.json", PGBENCH)):
            path = os.path.join(d, file)
            if os.path.exists(path):
                r = load_json(path)
                rows.append([n, series, r["p50_ms"], r["p99_ms"], round(r["tps"]), "", "", 0])
    return rows


def pair_rows(res):
    """Every run of each size beside its reference run (reference.jsonl)."""
    rows = []
    for d in sorted(os.listdir(res)):
        path = os.path.join(res, d, "reference.jsonl")
        if re.fullmatch(r"curve-\d+", d) and os.path.isfile(path):
            rows.extend([r["sessions"], SERIES[r["series"]], r["run"], r["first"], r["p99_ms"],
                         r["reference_sessions"], r["reference_p99_ms"], round(r["ratio"], 4),
                         r.get("started_first", ""), round(r.get("rps", 0)), round(r.get("reference_rps", 0))]
                        for r in load_jsonl(path))
    return sorted(rows, key=lambda r: (r[0], r[1], r[2]))


def sweep_rows(res):
    path = os.path.join(res, "registry", "sweep.jsonl")
    if not os.path.exists(path):
        return []
    names = {"pgbench -S": PGBENCH, "token": TOKEN, "jwt": JWT}
    return [
        [r["connections"], names.get(r["workload"], r["workload"]), round(r["rps"]), r["p50_ms"], r["p99_ms"], r["errors"],
         # pgbench's p99 with wrk's correction for coordinated omission (bench/lib/pgbench_log.py)
         r.get("p99_corrected_ms", "")]
        for r in load_jsonl(path)
    ]


def write_csv(path, header, rows):
    if not rows:
        if os.path.exists(path):
            os.remove(path)
        return
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def main() -> None:
    res = sys.argv[1]
    repeats = []
    write_csv(os.path.join(res, "curve.csv"),
              ["sessions", "series", "p50_ms", "p99_ms", "rps", "requests", "db_lookups", "errors"],
              curve_rows(res, repeats))
    write_csv(os.path.join(res, "curve-runs.csv"),
              ["sessions", "series", "run", "p50_ms", "p99_ms", "rps"], repeats)
    write_csv(os.path.join(res, "curve-pairs.csv"),
              ["sessions", "series", "run", "first", "p99_ms", "reference_sessions", "reference_p99_ms", "ratio",
               "started_first", "rps", "reference_rps"],
              pair_rows(res))
    write_csv(os.path.join(res, "sweep.csv"),
              ["connections", "series", "rps", "p50_ms", "p99_ms", "errors", "p99_corrected_ms"], sweep_rows(res))


if __name__ == "__main__":
    main()
