#!/usr/bin/env python3
"""bench/all.sh's report: the "## Summary" section (on stdout) and, in RESULTS_DIR,
curve-section.md ("## Sessions curve and connections sweep") and fuzz-section.md ("## Fuzzing",
for docs/reliability.md).

    ALL_COMMAND=… ALL_PLOTS=docs/plots ALL_DOC=docs/benchmarks.md all_summary.py RESULTS_DIR

Every figure comes from RESULTS_DIR (this invocation's raw figures); a step that did not run in
this invocation is named with the date its section of the document was last measured, and no
figure of it is repeated here.
"""
import csv
import json
import os
import re
import statistics
import sys

TARGET_RATIO = 1.2  # issue #16: p99 at 10 M within 20 % of p99 at 10 k
TOKEN = "authenticate by token"
JWT = "authenticate by JWT"
# The same workloads at a fixed offered load below saturation (bench/registry.sh BENCH_PACED_DELAY_MS).
TOKEN_PACED = "authenticate by token at a fixed rate"
JWT_PACED = "authenticate by JWT at a fixed rate"
LOOKUP = "token-hash statement in Postgres"
PGBENCH = "pgbench -S (anchor)"

env = os.environ
res = sys.argv[1]
doc = env.get("ALL_DOC", "")
plots = env.get("ALL_PLOTS", "docs/plots")


def path(*parts):
    return os.path.join(res, *parts)


def load_json(*parts):
    try:
        with open(path(*parts), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_jsonl(*parts):
    try:
        with open(path(*parts), encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return []


def yes(ok):
    return "**met**" if ok else "**not met**"


def count(n):
    n = int(n)
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000} M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000} k"
    return f"{n:,}"


def ms(v):
    return f"{v:.2f} ms"


steps = {}
if os.path.exists(path("steps.tsv")):
    with open(path("steps.tsv"), encoding="utf-8") as f:
        for line in f:
            name, status, secs = line.rstrip("\n").split("\t")
            steps[name] = (status, int(secs))
run = load_json("run.json") or {}

# The section of the document a step writes, and the date it was last measured there.
SECTIONS = {
    "core": "## session-core",
    "store": "## account-store",
    "cli": "## lanyard CLI",
    "idp": "## mock-idp: token endpoint throughput",
    "registry": "## session-registry",
}


def measured_in_doc(step):
    if not doc or not os.path.exists(doc) or step not in SECTIONS:
        return None
    text = open(doc, encoding="utf-8").read()
    i = text.find("\n" + SECTIONS[step] + "\n")
    if i < 0:
        return None
    m = re.search(r"Measured (\d{4}-\d\d-\d\d \d\d:\d\d UTC)", text[i : i + 3000])
    return m.group(1) if m else None


rows = []  # (area, target, measured, anchor, met)
footnotes = {}  # step → status, for the steps that failed after writing figures
not_run = []


def ran(step):
    return steps.get(step, ("", 0))[0] == "ok"


def flagged(step, area):
    """A step that failed after writing its figures (bench/registry.sh refuses to write its
    section when wrk counted socket errors) still reports them, marked."""
    status = steps.get(step, ("", 0))[0]
    if status in ("", "ok"):
        return area
    footnotes[step] = status
    return f"{area} †"


def note_not_run(step, what):
    status = steps.get(step, ("not run in this invocation", 0))[0]
    when = measured_in_doc(step)
    not_run.append(f"{what} ({step}): {status}" + (f"; its section was last measured {when}" if when else ""))


# --- registry
reg_runs = {r["name"]: r for r in load_jsonl("registry", "runs.jsonl")}
reg_pg = load_json("registry", "pgbench.json")
reg_meta = load_json("registry", "meta.json")
revoke = load_json("registry", "revoke.json")
if reg_pg and "token" in reg_runs and "jwt" in reg_runs:
    pg = reg_pg["tps"]
    tok, jwt = reg_runs["token"], reg_runs["jwt"]
    size = count(reg_meta["sessions"]) if reg_meta else "?"
    area = flagged("registry", f"session-registry ({size} sessions, {reg_pg['connections']} connections)")
    anchor = f"`pgbench -S` {pg:,.0f} tps, p99 {ms(reg_pg['p99_ms'])}"
    if isinstance(reg_pg.get("corrected"), dict):
        # wrk's figures are corrected for coordinated omission; pgbench's the same way, to compare.
        anchor += f" ({ms(reg_pg['corrected']['p99_ms'])} with wrk's correction)"
    # With repeats (ALL_REGISTRY_REPEATS), each token run beside a `pgbench -S` run of its own
    # (pairs.jsonl): the verdicts take the median of the pairs' ratios and of the runs' p99.
    pairs = load_jsonl("registry", "pairs.jsonl")
    token_runs = [r for k, r in reg_runs.items() if k == "token" or re.fullmatch(r"token-r\d+", k)]
    if len(pairs) > 1:
        ratio = statistics.median(p["ratio"] for p in pairs)
        each = ", ".join(f"{p['ratio']:.2f}" for p in pairs)
        rows.append((area, f"authenticate by token ≥ 1.5 × `pgbench -S` (issue #14), median of {len(pairs)} pairs",
                     f"{ratio:.2f} × ({each}); first run {tok['rps']:,.0f} requests/s", anchor + " (first pair)", yes(ratio >= 1.5)))
    else:
        rows.append((area, "authenticate by token ≥ 1.5 × `pgbench -S` (issue #14)",
                     f"{tok['rps']:,.0f} requests/s = {tok['rps'] / pg:.2f} ×", anchor, yes(tok["rps"] >= 1.5 * pg)))
    errors = sum(r["errors"] for r in token_runs)
    tok_errors = f"; wrk socket errors: {errors}" if errors else ""
    if len(token_runs) > 1:
        p99 = statistics.median(r["p99_ms"] for r in token_runs)
        each = ", ".join(ms(r["p99_ms"]) for r in token_runs)
        rows.append((area, f"authenticate by token p99 < 2 ms (issue #14), median of {len(token_runs)} runs",
                     f"{ms(p99)} ({each})" + tok_errors, anchor, yes(p99 < 2)))
    else:
        rows.append((area, "authenticate by token p99 < 2 ms (issue #14)", ms(tok["p99_ms"]) + tok_errors, anchor, yes(tok["p99_ms"] < 2)))
    rows.append((area, "authenticate by JWT above `pgbench -S`",
                 f"{jwt['rps']:,.0f} requests/s = {jwt['rps'] / pg:.2f} ×", anchor, yes(jwt["rps"] > pg)))
    if revoke:
        rows.append((area, "revoke → SSE delivery p99 < 1 s, none missed",
                     f"p99 {ms(revoke['p99_ms'])}, {revoke['missed']} missed of {revoke['samples']}", "",
                     yes(revoke["p99_ms"] < 1000 and revoke["missed"] == 0)))
else:
    note_not_run("registry", "session-registry authenticate, list, revoke")

# --- several registry processes (the scale step)
sc_runs = {r["name"]: r for r in load_jsonl("scale", "runs.jsonl")}
sc_rev = load_json("scale", "revoke.json")
sc_meta = load_json("scale", "meta.json")
if sc_rev:
    procs = sc_rev.get("processes", 3)
    area = flagged("scale", f"session-registry, {procs} processes behind HAProxy")
    rows.append((area, f"revoke → delivery to {sc_rev['subscribers']:,} SSE subscribers: p99 < 100 ms, none missed (issue #14)",
                 f"p99 {ms(sc_rev['p99_ms'])}, {sc_rev['missed']} missed", "",
                 yes(sc_rev["p99_ms"] < 100 and sc_rev["missed"] == 0)))
    per_sub = sc_rev.get("kib_per_idle_subscriber")
    if per_sub is not None:
        rows.append((area, "resident memory per idle SSE subscriber < 16 KiB (issue #14)", f"{per_sub:.1f} KiB", "", yes(per_sub < 16)))
    if "token-lb" in sc_runs and "token" in sc_runs:
        one, many = sc_runs["token"]["rps"], sc_runs["token-lb"]["rps"]
        rows.append((area, "authenticate by token through HAProxy ÷ one process (no target; same 2 cores)",
                     f"{many:,.0f} ÷ {one:,.0f} requests/s = {many / one:.2f} ×", "", ""))
else:
    not_run.append(f"session-registry, several processes (scale): {steps.get('scale', ('not run in this invocation', 0))[0]}")

# --- sessions curve
curve = []
if os.path.exists(path("curve.csv")):
    with open(path("curve.csv"), encoding="utf-8") as f:
        curve = list(csv.DictReader(f))
for r in curve:
    r["sessions"] = int(r["sessions"])
    r["p50_ms"], r["p99_ms"] = float(r["p50_ms"]), float(r["p99_ms"])
sizes = sorted({r["sessions"] for r in curve})
# Every run of each size (BENCH_REPEATS): the curve's figures are their medians.
curve_runs = {}
if os.path.exists(path("curve-runs.csv")):
    with open(path("curve-runs.csv"), encoding="utf-8") as f:
        for r in csv.DictReader(f):
            curve_runs.setdefault((r["series"], int(r["sessions"])), []).append(float(r["p99_ms"]))
repeats = max((len(v) for v in curve_runs.values()), default=1)
# Every run beside its reference run, measured back to back (bench/registry.sh
# BENCH_REFERENCE_SESSIONS): (series, sessions) → [(run, first, p99, reference sessions,
# reference p99, ratio, which process the repeat started first ("" when both were started once))].
curve_pairs = {}
if os.path.exists(path("curve-pairs.csv")):
    with open(path("curve-pairs.csv"), encoding="utf-8") as f:
        for r in csv.DictReader(f):
            curve_pairs.setdefault((r["series"], int(r["sessions"])), []).append(
                (int(r["run"]), r["first"], float(r["p99_ms"]), int(r["reference_sessions"]),
                 float(r["reference_p99_ms"]), float(r["ratio"]), r.get("started_first") or ""))
median_of = f"median of {repeats} runs, " if repeats > 1 else ""


def point(series, n):
    return next((r for r in curve if r["series"] == series and r["sessions"] == n), None)


def pair_spread(pairs):
    """How the pairs spread: how many are within the target, the median of each order (which
    of the two runs went first alternates from one repeat to the next) and, where both processes
    were started again before each repeat, the median by which of them started first."""
    within = sum(p[5] <= TARGET_RATIO for p in pairs)
    orders = []
    for key, first, label in ((1, "main", "larger size run first"), (1, "reference", "reference run first"),
                              (6, "main", "larger size's process started first"),
                              (6, "reference", "reference's process started first")):
        r = [p[5] for p in pairs if p[key] == first]
        if r:
            orders.append(f"{label}: median {statistics.median(r):.2f} × of {len(r)}")
    return f"{within} of {len(pairs)} pairs within 20 %; " + ", ".join(orders)


def settle_note():
    """ The settle runs (each fresh process's first token run) beside the token runs measured after
    them, from every size's runs.jsonl: do the stalls come with a process's first run?"""
    stall_ms = 25
    settle, measured = [], []
    for n in sizes:
        runs = load_jsonl(f"curve-{n}", "runs.jsonl")
        names = {r["name"] for r in runs}
        for r in runs:
            if r["name"].startswith("settle-"):
                settle.append(r["p99_ms"])
            elif re.fullmatch(r"(ref-)?token(-r\d+)?", r["name"]) and f"settle-{r['name']}" in names:
                measured.append(r["p99_ms"])
    if not settle:
        return ""
    def told(v):
        return (f"p99 median {statistics.median(v):.2f} ms, highest {max(v):.2f} ms, "
                f"{sum(x > stall_ms for x in v)} of {len(v)} over {stall_ms} ms")
    return (f" In this run: the {len(settle)} settle runs, {told(settle)}; the {len(measured)} token runs measured "
            f"right after them, {told(measured) if measured else 'none'}.")


PACED_OF = {TOKEN: TOKEN_PACED, JWT: JWT_PACED}
PACED_SERIES = tuple(PACED_OF.values())


def paced_judged(series, lo, hi):
    """Whether the saturated series' target is judged on its fixed-rate runs instead: they were
    made at the smallest and the largest size."""
    paced = PACED_OF.get(series)
    return bool(paced and point(paced, lo) and point(paced, hi))


def rate(series, n):
    """ " at about N requests/s" for a fixed-rate series (its median rate at size n)."""
    r = point(series, n)
    return f" at about {round(float(r['rps']), -2):,.0f} requests/s" if r and series in PACED_SERIES else ""


curve_verdicts = []
if len(sizes) >= 2:
    lo, hi = sizes[0], sizes[-1]
    full = lo <= 10_000 and hi >= 10_000_000
    pg_lo, pg_hi = point(PGBENCH, lo), point(PGBENCH, hi)
    anchor = (f"`pgbench -S` p99 {ms(pg_lo['p99_ms'])} → {ms(pg_hi['p99_ms'])} in the same runs"
              if pg_lo and pg_hi else "")
    # Where a workload's fixed-rate runs were made at both ends, its target is judged on them: at
    # saturation (every connection sending again the moment it is answered) a p99 on two shared
    # cores measures their run queue, not the size (docs/benchmarks.md, "Restarts and a fixed
    # rate"). Each saturated series → its fixed-rate series.
    for series in (TOKEN, JWT, *PACED_SERIES):
        a, b = point(series, lo), point(series, hi)
        if not (a and b):
            continue
        ratio = b["p99_ms"] / a["p99_ms"]
        # The verdict: the median of the same-minute pairs (the largest size's runs each beside
        # a run at the smallest size), where they were measured; else the sizes' medians, which
        # were measured minutes apart.
        pairs = [p for p in curve_pairs.get((series, hi), []) if p[3] == lo]
        same = statistics.median(p[5] for p in pairs) if pairs else None
        met = (same if same is not None else ratio) <= TARGET_RATIO
        judged = series in PACED_SERIES or not paced_judged(series, lo, hi)
        verdict = yes(met) if full else f"not measured at 10 M (largest size {count(hi)}); up to there: {'within' if met else 'beyond'} 20 %"
        requirement = f"{series}{rate(series, hi)}: p99 at 10 M within 20 % of p99 at 10 k (issue #16)"
        if not judged:
            verdict = f"(no target; {'within' if met else 'beyond'} 20 %)"
            requirement = (f"{series}, every connection flat out (saturation): p99 at {count(hi)} ÷ p99 at {count(lo)} "
                           "(no target: the fixed-rate row below is the target's; see the section)")
        curve_verdicts.append((series, a, b, ratio, met, full, same, pairs, judged))
        # Every size's p99, so a curve that is not monotonic (a stall at one size) shows.
        path_ = " → ".join(f"{point(series, n)['p99_ms']:.2f}" for n in sizes if point(series, n))
        apart = f"p99 ({median_of}each size) {path_} ms ({' → '.join(count(n) for n in sizes)}); {count(hi)} ÷ {count(lo)}: {ratio:.2f} ×"
        if pairs:
            measured = (f"{count(hi)} ÷ {count(lo)} measured the same minute, median of {len(pairs)} pairs: {same:.2f} × "
                        f"({', '.join(f'{p[2]:.2f} ÷ {p[4]:.2f}' for p in pairs)} ms; {pair_spread(pairs)}). "
                        f"The sizes' own runs, minutes apart: {apart}")
        elif curve_pairs:
            measured = f"{apart} (no same-minute pairs of {count(hi)} with {count(lo)}: the sizes' medians, measured minutes apart)"
        else:
            measured = apart
        rows.append((f"sessions curve, {count(lo)} → {count(hi)} sessions", requirement, measured, anchor, verdict))
    a, b = point(LOOKUP, lo), point(LOOKUP, hi)
    if a and b:
        rows.append((f"sessions curve, {count(lo)} → {count(hi)} sessions",
                     "the registry's token-hash statement alone (pgbench on the sessions table), p99",
                     f"{ms(a['p99_ms'])} → {ms(b['p99_ms'])} ({b['p99_ms'] / a['p99_ms']:.2f} ×)", anchor, "(no target)"))
elif not any(k.startswith("curve-") for k in steps):
    note_not_run("curve", "sessions curve")

# --- CLI
cli_dir = path("cli")
if ran("cli") and os.path.isdir(cli_dir):
    def hf(name):
        r = load_json("cli", name + ".json")
        return r["results"][0]["median"] * 1000 if r else None

    gh = hf("gh-token")
    anchor = f"`gh auth token` (Debian's gh, token in its config file) median {ms(gh)}" if gh else "(gh not installed)"
    for p, label in (("bench", "vault, key from passphrase"), ("bench-vk", "vault, key in the Secret Service"),
                     ("bench-ss", "Secret Service")):
        m = hf(f"token-1-{p}")
        if m is not None:
            rows.append(("lanyard CLI", f"`lanyard token` under 15 ms ({label})", f"median {ms(m)}", anchor, yes(m < 15)))
    m = hf("prompt-n")
    if m is not None:
        rows.append(("lanyard CLI", "`lanyard prompt` median under 5 ms", f"median {ms(m)}", "", yes(m < 5)))
else:
    note_not_run("cli", "lanyard CLI")

# --- IdP
idp = load_jsonl("idp", "runs.jsonl")
if ran("idp") and idp:
    get = lambda server, scenario: next((r for r in idp if r["server"] == server and r["scenario"] == scenario), None)
    for scenario, label in (("refresh", "refresh_token grant"), ("code", "authorization_code flow")):
        a, b = get("mock-idp", scenario), get("oidc-provider", scenario)
        if a and b:
            rows.append(("mock-idp token endpoint", f"{label} throughput (no numeric target)",
                         f"{a['rps']:,.0f} requests/s, p99 {ms(a['p99_ms'])} ({a['rps'] / b['rps']:.2f} × the anchor)",
                         f"oidc-provider {b['rps']:,.0f} requests/s, p99 {ms(b['p99_ms'])}", ""))
else:
    note_not_run("idp", "mock-idp token endpoint")

for step, what in (("core", "session-core access_token (no target)"), ("store", "account-store backends (no target)")):
    if not ran(step):
        note_not_run(step, what)

# --- fuzz
fuzz = load_jsonl("fuzz", "fuzz.jsonl")
if fuzz:
    crashed = [f["target"] for f in fuzz if f["crashed"]]
    execs = sum(f["executions"] or 0 for f in fuzz)
    rows.append(("fuzzing (`scripts/fuzz`)", f"no crash: {len(fuzz)} targets × {fuzz[0]['seconds']} s",
                 f"{execs:,} executions; crashes: {', '.join(crashed) or 'none'}", "", yes(not crashed)))
else:
    not_run.append(f"fuzzing (fuzz): {steps.get('fuzz', ('not run in this invocation', 0))[0]}")

# --- scenarios and faults, hostile input (their sections are in docs/reliability.md)
scen_section = path("scenarios", "section.md")
if os.path.exists(scen_section):
    with open(scen_section, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"(\d+) tests reported(?: of (\d+) started)?, (\d+) passed, ([^,]+),", text)
    if m:
        reported, _, passed, verdict = m.groups()
        rows.append(("scenarios and faults (`scripts/scenarios`)", "every multi-device scenario and scripted fault passes (issue #16 items 1 and 3)",
                     f"{passed} of {reported} tests passed ({verdict})", "", yes(verdict == "every test passed")))
elif "scenarios" in steps:
    rows.append(("scenarios and faults (`scripts/scenarios`)", "every multi-device scenario and scripted fault passes (issue #16 items 1 and 3)",
                 steps["scenarios"][0], "", yes(False)))
else:
    not_run.append(f"scenarios and faults (scenarios): {steps.get('scenarios', ('not run in this invocation', 0))[0]}")
if "hostile" in steps:
    import xml.etree.ElementTree as ET
    parts = []
    failing = 0
    for name, label in (("registry", "registry"), ("idp-admin", "IdP admin API")):
        try:
            root = ET.parse(path("hostile", f"{name}.xml")).getroot()
        except (OSError, ET.ParseError):
            parts.append(f"{label}: no report")
            failing += 1
            continue
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        fails = sum(int(x.get("failures", 0)) + int(x.get("errors", 0)) for x in suites)
        ops = sum(int(x.get("tests", 0)) for x in suites)
        failing += fails
        parts.append(f"{label}: {ops} operations, {fails} failing")
    ok = failing == 0 and steps["hostile"][0] == "ok"
    rows.append(("hostile input (`scripts/hostile`, schemathesis)", "no 5xx, every answer as documented (issue #16 item 4)",
                 "; ".join(parts), "", yes(ok)))
else:
    not_run.append("hostile input (hostile): not run in this invocation")

# --- soak
soak = load_json("soak", "soak.json")
if soak and "operations" in soak:
    # Resident memory (registry, mock-idp) at the warm mark and at the end: flat is part of the target.
    mib = lambda kib: "/".join(f"{k / 1024:.0f}" for k in kib)  # noqa: E731
    memory = (f"; memory (registry/mock-idp) {mib(soak['rss_warm_kib'])} MiB at {soak['rss_warm_at_secs']} s, "
              f"{mib(soak['rss_end_kib'])} MiB at the end: {'flat' if soak.get('memory_flat') else 'not flat'}"
              if "rss_warm_kib" in soak else "")
    rows.append(("soak (`bench/soak.sh`)",
                 f"{soak['duration_secs']:.0f} s at {soak['rate']}/s: zero 5xx, every revoke delivered, audit clean, memory flat",
                 f"{soak['server_errors']} 5xx, {soak['revoke_deliveries_missed']} missed, {len(soak['problems'])} audit problems{memory}",
                 "", yes(soak["server_errors"] == 0 and soak["revoke_deliveries_missed"] == 0 and not soak["problems"]
                         and soak.get("memory_flat", False))))
else:
    not_run.append(f"soak (soak): {steps.get('soak', ('not run in this invocation', 0))[0]}; docs/reliability.md keeps its own")

# --- the summary section
plots_rel = os.path.relpath(plots, os.path.dirname(doc) or ".") if doc else plots
out = ["## Summary", ""]
out.append(
    f"Made by `{env.get('ALL_COMMAND', 'bench/all.sh')}` (commit {run.get('commit', '?')}) from {run.get('started', '?')} "
    f"to {run.get('finished', '?')} on {run.get('machine', '?')}; load average (1/5/15 min) {run.get('load_start', '?')} "
    f"at the start, {run.get('load_end', '?')} at the end; run at nice {run.get('nice', '?')}. Each row's figure and its anchor come from the same run; "
    f"every step's own section below has the details, and the raw figures were written to `bench/results/` "
    f"(not kept in git). This is a shared 2-core machine: the load generators, Postgres and the servers share it."
    + (f" At nice {run['nice']}, the servers and load generators (not Postgres, a system service) lose the CPU to "
       "any un-niced work on the machine, such as a build: that stretches their tails (p99) far more than their "
       "medians." if run.get("nice", 0) > 0 else "")
)
out.append("")
out.append("| area | target | measured | anchor (same run) | met? |")
out.append("| --- | --- | --- | --- | --- |")
for r in rows:
    out.append("| " + " | ".join(r) + " |")
out.append("")
if footnotes:
    out.append(
        "† " + ", ".join(f"{k} {v}" for k, v in footnotes.items())
        + ": the step wrote its figures, then refused to rewrite its section of the document because the load "
        "generator counted socket errors (wrk: requests left unanswered for 2 s, or lost sockets; never an error "
        "answer); the rows are this run's figures all the same."
    )
    out.append("")
if not_run:
    out.append("Not in this run: " + "; ".join(not_run) + ".")
    out.append("")
out.append("Steps: " + ", ".join(f"{k} {v[0]} ({v[1]} s)" for k, v in steps.items()) + ".")
out.append("")
svgs = [f for f in ("sessions-curve.svg", "throughput-connections.svg", "latency-histogram.svg")
        if os.path.exists(os.path.join(plots, f))]
if svgs:
    titles = {
        "sessions-curve.svg": "Authenticate latency against sessions stored",
        "throughput-connections.svg": "Throughput against connections",
        "latency-histogram.svg": "Latency distribution",
    }
    out.append("Plots (drawn by `lanyard-bench-plot`, `bench/plot`, with plotters; shown in the section "
               "\"Sessions curve and connections sweep\"): "
               + ", ".join(f"[{titles[f].lower()}]({plots_rel}/{f})" for f in svgs) + ".")
    out.append("")
print("\n".join(out).rstrip())

# --- the curve section
sec = []
if curve:
    metas = {n: load_json(f"curve-{n}", "meta.json") or {} for n in sizes}
    db_sizes = {}
    if os.path.exists(path("curve-sizes.tsv")):
        with open(path("curve-sizes.tsv"), encoding="utf-8") as f:
            for line in f:
                n, b = line.split()
                db_sizes[int(n)] = int(b)
    m0 = metas[sizes[0]]
    sec += ["## Sessions curve and connections sweep", ""]
    sec.append(
        f"Made by `{env.get('ALL_COMMAND', 'bench/all.sh')}` on {run.get('machine', '?')}; "
        f"each size is one run of `{m0.get('command', 'bench/registry.sh')}` with its `BENCH_SESSIONS`"
        + (f", the token and JWT workloads {repeats} times each (the table gives each figure's median over them) " if repeats > 1 else " ")
        + f"({m0.get('connections', '?')} connections, {m0.get('warmup', '?')} s warm-up, then {m0.get('duration', '?')} s "
        f"per workload; {m0.get('pg_version', '')})."
    )
    sec.append("")
    sec.append("| sessions stored | database | seeding | authenticate by token p50 / p99 (requests/s; looked up in Postgres) | token answers over 25 ms by the registry's clock | authenticate by JWT p50 / p99 (requests/s) | token-hash statement p50 / p99 (tps) | `pgbench -S` p50 / p99 (tps) | load average before → after |")
    sec.append("| ---: | ---: | ---: | --- | ---: | --- | --- | --- | --- |")
    def cell_of(series, n):
        r = point(series, n)
        return f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms ({int(r['rps']):,})" if r else ""

    for n in sizes:
        def cell(series):
            r = point(series, n)
            if not r:
                return ""
            extra = f"{int(r['rps']):,}"
            if series == TOKEN and r.get("db_lookups") not in (None, ""):
                extra += f"; {float(r['db_lookups']):,.0f} of {int(r['requests']):,}"
            if r.get("errors") not in (None, "", "0"):
                extra += f"; **wrk socket errors: {r['errors']}**"
            return f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms ({extra})"
        m = metas[n]
        db = f"{db_sizes[n] / 2**30:.2f} GiB" if n in db_sizes else ""
        slow = re.search(r"clock: ([\d,]+)", m.get("token_batching", ""))
        sec.append(f"| {m.get('rows', n):,} | {db} | {m.get('seed_secs', '?')} s | {cell(TOKEN)} | {slow.group(1) if slow else ''} | {cell(JWT)} | {cell(LOOKUP)} | {cell(PGBENCH)} | {m.get('load_start', '')} → {m.get('load_end', '')} |")
    sec.append("")
    if any(point(s_, n) for s_ in PACED_SERIES for n in sizes):
        sec.append(f"The same workloads at a fixed offered load below saturation (`BENCH_PACED_DELAY_MS={m0.get('paced_delay_ms', '?')}`: "
                   f"each of the {m0.get('connections', '?')} connections pauses that long after each answer; "
                   f"1 s warm-up, then {m0.get('paced_duration', '?')} s), right after each saturated run; each larger size's "
                   "fixed-rate runs are paired with the reference's as the saturated ones are, the same minute (the "
                   "reference's first pass and saturated run come between the two)."
                   + (" The sessions-curve target is judged on these runs: a latency target means something at a stated "
                      "load, and at saturation, every connection sending again the moment it is answered, a p99 on the "
                      "shared cores measures their run queue as much as the registry. The saturated rows stay in the "
                      "table above and in the Summary, with their ratios; docs/benchmarks.md's hand-written section "
                      "\"Restarts and a fixed rate\" has the runs that led to this." if paced_judged(TOKEN, sizes[0], sizes[-1])
                      or paced_judged(JWT, sizes[0], sizes[-1]) else ""))
        sec.append("")
        sec.append(f"| sessions stored | {TOKEN_PACED}: p50 / p99 (requests/s) | {JWT_PACED}: p50 / p99 (requests/s) |")
        sec.append("| ---: | --- | --- |")
        for n in sizes:
            sec.append(f"| {metas[n].get('rows', n):,} | {cell_of(TOKEN_PACED, n)} | {cell_of(JWT_PACED, n)} |")
        sec.append("")
    for series, a, b, ratio, met, full, same, pairs, judged in curve_verdicts:
        bound = "10 M within 20 % of 10 k" if full else f"{count(b['sessions'])} within 20 % of {count(a['sessions'])} (10 M not measured)"
        bound = (f"target p99 at {bound}" if judged
                 else f"no target at saturation (the target is judged at the fixed rate); p99 at {bound}")
        if pairs:
            sec.append(f"- {series}: p99 at {count(b['sessions'])} ÷ p99 at {count(a['sessions'])} measured the same minute, the median of {len(pairs)} pairs: {same:.2f} × ({pair_spread(pairs)}); {bound}: {yes(met) if full and judged else ('within' if met else 'beyond') + ' 20 %'}. "
                       f"Each size's median p99, its runs minutes apart from the other size's: {ms(a['p99_ms'])} at {count(a['sessions'])}, {ms(b['p99_ms'])} at {count(b['sessions'])} ({ratio:.2f} ×).")
            each = "; ".join(
                f"{count(n)}: " + ", ".join(f"{p[2]:.2f} ÷ {p[4]:.2f} = {p[5]:.2f}"
                                            + ((" (" + ", ".join(w for w, c in (("reference run first", p[1] == "reference"),
                                                                                ("reference's process started first", p[6] == "reference")) if c) + ")")
                                               if p[1] == "reference" or p[6] == "reference" else "")
                                            for p in curve_pairs[(series, n)])
                for n in sizes if curve_pairs.get((series, n)))
            sec.append(f"  Every pair, p99 ms at the size ÷ at {count(pairs[0][3])} the same minute — {each}.")
        else:
            sec.append(f"- {series}: p99 ({median_of.rstrip(', ') or 'one run'}) {ms(a['p99_ms'])} at {count(a['sessions'])}, {ms(b['p99_ms'])} at {count(b['sessions'])}: {ratio:.2f} ×; {bound}: {yes(met) if full and judged else ('within' if met else 'beyond') + ' 20 %'}.")
        if repeats > 1:
            each = "; ".join(
                f"{count(n)}: " + ", ".join(f"{v:.2f}" for v in curve_runs.get((series, n), []))
                for n in sizes if curve_runs.get((series, n)))
            sec.append(f"  Every run's p99, ms — {each}.")
    sec.append("")
    sec.append(
        "How to read it. Each size is a fresh database: `bench/registry.sh` seeds the sessions with SQL (10 per account, "
        "each on its own device, then `VACUUM ANALYZE`), gives 10,000 of them, spread evenly over the table, real tokens, "
        "and presents one of those at random per request. The registry answers a token it looked up in the last 60 s from "
        "its session cache, so in a run of this length most token requests are answered from memory whatever the size; "
        "the column says how many of them went to Postgres (`lanyard_registry_token_lookups_total`). The JWT path never "
        "reads the database. What the size itself costs is therefore in the token-hash statement column: the registry's "
        "own lookup statement (`SELECT … FROM sessions WHERE tenant = $1 AND token_hash = ANY($2)`) run by pgbench on the "
        "same table for the hash of a random seeded session, one transaction in ten logged for the percentiles. "
        "`pgbench -S` runs on its own 1,000,000-row table at every size: it is the anchor for the machine's state during "
        "each size's runs (other work on this shared machine moves every p99). wrk's p99 counts from the moment "
        "the request is written to the moment the answer is read; the registry's own clock "
        "(`lanyard_registry_http_request_duration_seconds`) starts when the handler does. Where wrk's p99 is far "
        "above the registry's count of slow answers (1 % of the requests is thousands), the time was lost before "
        "the handler ran or after it answered — in the queues of the shared cores, the registry's event loop or wrk "
        "itself — not in the lookup; wrk's socket errors are requests it timed out or sockets it lost, never error answers."
    )
    sec.append("")
    if curve_pairs:
        ref_n = next(iter(curve_pairs.values()))[0][3]
        sec.append(
            f"Same-minute pairs. Each size above {count(ref_n)} also seeded a second database of {count(ref_n)} sessions the "
            "same way, served by a registry process of its own (`bench/registry.sh` with `BENCH_REFERENCE_SESSIONS`), "
            f"and paired every token and JWT run with the same run against it in the same minute, prepared the same way (a first pass "
            f"over its {min(ref_n, 10_000):,} tokens; freshly minted JWTs), the order swapped from one repeat to the next. "
            "The reference is not the curve's own smallest step: it is a database of its own on the same server, beside the "
            "larger one, served by a second registry process that sits idle while the larger size runs. On this shared "
            "machine a p99 moves from minute to minute with whatever else runs, by more than the 20 % the target allows; "
            "two runs a minute apart see the same machine, two sizes measured 20 minutes apart do not. The verdicts take "
            "the median of those same-minute ratios, as the token ratio to `pgbench -S` takes the median of its pairs."
        )
        if any(p[6] for ps in curve_pairs.values() for p in ps):
            sec.append("")
            sec.append(
                "Both registry processes were stopped and started again before each repeat, the larger size's first in "
                "repeats 1, 2 and 5 (and so on, two by two) and the reference's first in 3 and 4, while the order of the "
                "two runs swaps every repeat: each database is served by the process started first and by the one "
                "started second, and run first and second. After each start, a 5 s token run (`settle-…` in the raw "
                "figures, in no verdict) comes before the measured one, so that a fresh process's first seconds under "
                "load are measured apart."
                + settle_note()
            )
        sec.append("")
sweep = []
if os.path.exists(path("sweep.csv")):
    with open(path("sweep.csv"), encoding="utf-8") as f:
        sweep = list(csv.DictReader(f))
if sweep:
    if not sec:
        sec += ["## Sessions curve and connections sweep", ""]
    conns = sorted({int(r["connections"]) for r in sweep})
    series = list(dict.fromkeys(r["series"] for r in sweep))
    sec.append(
        f"Connections sweep ({count(reg_meta['sessions']) if reg_meta else '?'} sessions, the registry step's database, "
        f"{reg_meta.get('duration', '?') if reg_meta else '?'} s per run): requests (transactions) per second and p99."
    )
    sec.append("")
    sec.append("| connections | " + " | ".join(series) + " | token ÷ `pgbench -S` |")
    sec.append("| ---: | " + " | ".join("---:" for _ in series) + " | ---: |")
    for c in conns:
        cells, by = [], {}
        for s in series:
            r = next((x for x in sweep if x["series"] == s and int(x["connections"]) == c), None)
            by[s] = r
            errors = f", wrk socket errors: {r['errors']}" if r and r.get("errors") not in (None, "", "0") else ""
            fixed = f"; {float(r['p99_corrected_ms']):.2f} ms with wrk's correction" if r and r.get("p99_corrected_ms") not in (None, "") else ""
            cells.append(f"{int(r['rps']):,} (p99 {float(r['p99_ms']):.2f} ms{fixed}{errors})" if r else "")
        ratio = ""
        if by.get(TOKEN) and by.get(PGBENCH) and int(by[PGBENCH]["rps"]) > 0:
            ratio = f"{int(by[TOKEN]['rps']) / int(by[PGBENCH]['rps']):.2f}"
        sec.append(f"| {c} | " + " | ".join(cells) + f" | {ratio} |")
    sec.append("")
if sec:
    for f in svgs:
        sec.append(f"![{f}]({plots_rel}/{f})")
        sec.append("")
with open(path("curve-section.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(sec).rstrip() + "\n" if sec else "")

# --- fuzz section for docs/reliability.md
fz = []
if fuzz:
    fz += ["## Fuzzing", ""]
    fz.append(f"Made by `{env.get('ALL_COMMAND', 'bench/all.sh')}` (`scripts/fuzz`, {fuzz[0]['seconds']} s per target) from {run.get('started', '?')} on {run.get('machine', '?')}.")
    fz.append("")
    fz.append("| target | seconds | executions | crashed? |")
    fz.append("| --- | ---: | ---: | --- |")
    for f in fuzz:
        fz.append(f"| `{f['target']}` | {f['seconds']} | {f['executions'] or 0:,} | {'**yes**' if f['crashed'] else 'no'} |")
    fz.append("")
with open(path("fuzz-section.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(fz).rstrip() + "\n" if fz else "")
