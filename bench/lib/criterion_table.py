#!/usr/bin/env python3
"""A Markdown table of criterion results: median and its 95 % confidence interval.

    criterion_table.py CRITERION_HOME "full id=label" ...

Reads CRITERION_HOME/**/new/{benchmark,estimates}.json (criterion 0.5 layout). Rows come in the
order of the arguments; an id with no result is shown as "not run" (e.g. the Secret Service rows
when none answered).
"""
import json
import os
import sys


def fmt(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}" if ns / scale < 100 else f"{ns / scale:.0f} {unit}"
    return f"{ns:.3g} ns"


def per_second(ns: float) -> str:
    return f"{1e9 / ns:,.0f}"


def main() -> None:
    home, specs = sys.argv[1], sys.argv[2:]
    results = {}
    for dirpath, _, files in os.walk(home):
        if os.path.basename(dirpath) == "new" and "benchmark.json" in files:
            with open(os.path.join(dirpath, "benchmark.json"), encoding="utf-8") as f:
                bench = json.load(f)
            with open(os.path.join(dirpath, "estimates.json"), encoding="utf-8") as f:
                est = json.load(f)
            results[bench["full_id"]] = est
    print("| benchmark | median | 95 % CI of the median | per second (at the median) |")
    print("| --- | ---: | ---: | ---: |")
    for spec in specs:
        full_id, _, label = spec.partition("=")
        est = results.get(full_id)
        if est is None:
            print(f"| {label or full_id} | not run | | |")
            continue
        m = est["median"]
        ci = m["confidence_interval"]
        print(
            f"| {label or full_id} | {fmt(m['point_estimate'])} | "
            f"{fmt(ci['lower_bound'])} – {fmt(ci['upper_bound'])} | {per_second(m['point_estimate'])} |"
        )


if __name__ == "__main__":
    main()
