#!/usr/bin/env python3
"""Turns the output of scripts/scenarios (cargo-nextest, every test's output shown) into the section
"## Scenarios and faults: the last run" of docs/reliability.md.

    scenarios_report.py LOG --started UTC --seconds S --machine M --commit C --command CMD

Each test is one row: its group (the issue's item), its name, its result and seconds as nextest
printed them, and the one-line summary the test printed ("scenario NAME: ok — …",
"fault NAME: ok — …", "scale-out …"). A test nextest started but never reported (the run was cut)
is not in the table; the count line says how many nextest announced.
"""
import argparse
import re
import sys

# `        PASS [   0.209s] ( 22/570) account-store::secret_service profiles_do_not_see_…`
RESULT = re.compile(
    r"^\s*(PASS|FAIL|SIGSEGV|SIGABRT|SIGKILL|TIMEOUT|LEAK|LEAK-FAIL|ABORT|TRY \d+ FAIL|TRY \d+ PASS)"
    r"\s+\[\s*([0-9.]+)s\]\s+(?:\(\s*\d+/\d+\)\s+)?(\S+)\s+(\S+)\s*$"
)
STARTING = re.compile(r"Starting\s+(\d+)\s+tests?")
SUMMARY = re.compile(r"^\s*((?:scenario|fault|scale-out)\b.*?: (?:ok|FAILED)\b.*)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def group(binary: str, test: str) -> str:
    if binary.endswith("::scenarios"):
        return "multi-device scenario (item 1)"
    if binary.endswith("::faults"):
        return "fault (item 3)"
    if binary.endswith("::vault_disk_full"):
        return "fault (item 3)"
    if test.startswith("database_restart::") or test.startswith("scale_out::"):
        return "fault / multi-process (items 1 and 3)"
    return binary


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("log")
    p.add_argument("--started", required=True)
    p.add_argument("--seconds", required=True)
    p.add_argument("--machine", required=True)
    p.add_argument("--commit", required=True)
    p.add_argument("--command", required=True)
    a = p.parse_args()

    with open(a.log, encoding="utf-8", errors="replace") as f:
        lines = [ANSI.sub("", l.rstrip("\n")) for l in f]

    announced = None
    rows = {}  # (binary, test) -> [result, seconds, what it printed]
    order = []
    current = None  # nextest prints a test's output after its result line
    for line in lines:
        m = STARTING.search(line)
        if m and announced is None:
            announced = int(m.group(1))
        m = RESULT.match(line)
        if m:
            result, secs, binary, test = m.groups()
            current = (binary, test)
            if current not in rows:
                order.append(current)
            rows[current] = [result, secs, ""]
            continue
        m = SUMMARY.match(line)
        if m and current in rows:
            rows[current][2] = (rows[current][2] + " " + m.group(1)).strip()

    # LEAK is a pass whose test left a handle open; TRY n PASS a pass on a retry.
    passing = lambda result: result in ("PASS", "LEAK") or result.endswith(" PASS")
    passed = sum(1 for k in order if passing(rows[k][0]))
    failed = [k for k in order if not passing(rows[k][0])]
    cut = announced is not None and len(order) < announced
    if failed:
        verdict = f"{len(failed)} failed"
    elif cut or not order:
        verdict = "the run was cut before every test reported"
    else:
        verdict = "every test passed"
    out = []
    out.append("## Scenarios and faults: the last run")
    out.append("")
    out.append(
        f"Run {a.started} with `{a.command}` on {a.machine}, commit {a.commit}: "
        f"{len(order)} tests reported"
        + (f" of {announced} started" if announced is not None and announced != len(order) else "")
        + f", {passed} passed, {verdict}, in {a.seconds} s (build included). The registries run as "
        "real `session-registry` processes in the scenarios and in `scale_out`, in process (the same "
        "code) in the other tests; the IdP runs as the real `mock-idp` process in the scenarios and in "
        "`faults`, in process elsewhere; every test has Postgres databases of its "
        "own (`database_restart` a private Postgres server, which it kills) and the machine's NATS "
        "JetStream. Each test's assertions are in the file named in the table above (\"Faults\") or "
        "in `integration-tests/tests/scenarios.rs`. The same tests run in CI with the rest of the "
        "suite."
    )
    out.append("")
    out.append("| item | test | result | seconds | what it printed |")
    out.append("| --- | --- | --- | ---: | --- |")
    for k in order:
        result, secs, text = rows[k]
        binary, test = k
        shown = "pass" if passing(result) else "**" + result + "**"
        text = text.replace("|", "\\|")
        out.append(f"| {group(binary, test)} | `{binary} {test}` | {shown} | {secs} | {text} |")
    if not order:
        out.append("| | (no test reported: see the log) | | | |")
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
