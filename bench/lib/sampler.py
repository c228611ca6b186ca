#!/usr/bin/env python3
"""What the machine did, second by second, while a benchmark ran: to find where a stall came from.

    python3 bench/lib/sampler.py OUT_DIR PG_CONNINFO DB [PID ...] &

Until it is killed (SIGTERM), writes into OUT_DIR:

- system.tsv, one line a second: the CPU split (user, system, iowait, steal, idle, in cores),
  pressure stall seconds per second from /proc/pressure (cpu some, io some, io full, memory
  some), the disk's writes and the time requests spent queued (/proc/diskstats, every disk),
  dirty and writeback memory (/proc/meminfo), the listed processes' CPU (cores) and threads in
  uninterruptible sleep (state D: blocked on the disk or the kernel), and what the database's
  backends were waiting on (pg_stat_activity's wait_event_type:wait_event, counted; active
  backends only).

Only the standard library and psql: nothing to install. It reads /proc once a second, and
Postgres through one psql session.
"""

import os
import signal
import subprocess
import sys
import threading
import time

HZ = os.sysconf("SC_CLK_TCK")


def cpu_split():
    with open("/proc/stat", encoding="ascii") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return {"user": v[0] + v[1], "system": v[2] + v[5] + v[6], "idle": v[3], "iowait": v[4], "steal": v[7]}


def pressure(kind):
    """(some_total_us, full_total_us) of /proc/pressure/KIND, or zeros without PSI."""
    try:
        with open(f"/proc/pressure/{kind}", encoding="ascii") as f:
            totals = [int(line.rsplit("total=", 1)[1]) for line in f]
    except (OSError, ValueError, IndexError):
        return 0, 0
    return totals[0], totals[1] if len(totals) > 1 else 0


def disks():
    """Sectors written and ms of weighted queue time, summed over whole disks."""
    written = queued = 0
    with open("/proc/diskstats", encoding="ascii") as f:
        for line in f:
            p = line.split()
            name = p[2]
            if name.startswith(("loop", "ram", "dm-")) or name[-1].isdigit() and not name.startswith("nvme"):
                continue
            written += int(p[9])
            queued += int(p[13])
    return written, queued


def meminfo():
    out = {}
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            k, v = line.split(":", 1)
            if k in ("Dirty", "Writeback"):
                out[k] = int(v.split()[0])
    return out.get("Dirty", 0), out.get("Writeback", 0)


def proc(pids):
    """CPU ticks of the processes and how many of their threads are in state D."""
    ticks = blocked = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                p = f.read().rsplit(")", 1)[1].split()
            ticks += int(p[11]) + int(p[12])
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "D":
                        blocked += 1
        except (OSError, IndexError, ValueError):
            continue
    return ticks, blocked


class Waits:
    """What the database's active backends wait on, from one psql session that runs the query
    every second (`\\watch 1`): a psql process and a backend started every second (a fork, an
    authentication, an exit) cost the machine a few milliseconds each time, enough to move a
    benchmark's p99 on two cores. Each run of the query prints one line; the latest is kept."""

    def __init__(self, conninfo, db):
        query = (
            "SELECT coalesce(string_agg(w || '=' || n, ',' ORDER BY n DESC), '-') FROM ("
            "SELECT coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, '-') AS w, "
            f"count(*) AS n FROM pg_stat_activity WHERE datname = '{db}' AND state = 'active' "
            "AND pid <> pg_backend_pid() GROUP BY 1) t"
        )
        self.latest = "-"
        self.proc = subprocess.Popen(
            ["psql", f"{conninfo} dbname=postgres", "-qAtX"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.proc.stdin.write(f"{query}\n\\watch 1\n")
        self.proc.stdin.flush()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.latest = line.strip() or "-"

    def stop(self):
        self.proc.terminate()


def main():
    out_dir, conninfo, db, *pids = sys.argv[1:]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    pg = Waits(conninfo, db)
    cols = ("epoch user_cores system_cores iowait_cores steal_cores idle_cores cpu_some_s io_some_s "
            "io_full_s mem_some_s disk_write_mib disk_queue_s dirty_mib writeback_mib procs_cores "
            "procs_threads_in_D pg_active_waits").split()
    with open(os.path.join(out_dir, "system.tsv"), "w", encoding="utf-8") as f:
        f.write("\t".join(cols) + "\n")
        before = None
        while not stop:
            t = time.time()
            now = (t, cpu_split(), pressure("cpu"), pressure("io"), pressure("memory"), disks(), proc(pids))
            if before:
                dt = now[0] - before[0]
                c0, c1 = before[1], now[1]
                cores = {k: (c1[k] - c0[k]) / HZ / dt for k in c1}
                dirty, wb = meminfo()
                row = [
                    f"{t:.1f}",
                    *(f"{cores[k]:.2f}" for k in ("user", "system", "iowait", "steal", "idle")),
                    f"{(now[2][0] - before[2][0]) / 1e6 / dt:.3f}",
                    f"{(now[3][0] - before[3][0]) / 1e6 / dt:.3f}",
                    f"{(now[3][1] - before[3][1]) / 1e6 / dt:.3f}",
                    f"{(now[4][0] - before[4][0]) / 1e6 / dt:.3f}",
                    f"{(now[5][0] - before[5][0]) * 512 / 1048576 / dt:.1f}",
                    f"{(now[5][1] - before[5][1]) / 1000 / dt:.2f}",
                    f"{dirty / 1024:.0f}",
                    f"{wb / 1024:.0f}",
                    f"{(now[6][0] - before[6][0]) / HZ / dt:.2f}",
                    str(now[6][1]),
                    pg.latest,
                ]
                f.write("\t".join(row) + "\n")
                f.flush()
            before = now
            time.sleep(max(0.0, 1.0 - (time.time() - t)))
    pg.stop()


if __name__ == "__main__":
    main()
