#!/usr/bin/env python3
"""A request every 20 ms beside the load, timed: when the answers stalled, to the second.

    python3 bench/lib/canary.py OUT_TSV BASE_URL PATH BODY_FILE &

Sends the first line of BODY_FILE as a JSON POST to BASE_URL + PATH on one keep-alive connection
until killed (SIGTERM), and writes one line a second to OUT_TSV: the second, the requests sent,
the slowest answer (ms), how many took over 10 ms and over 100 ms, and the statuses other than
200. wrk reports a run's percentiles, not when its slow answers came; this places them in time
beside bench/lib/sampler.py's system.tsv.
"""

import http.client
import signal
import sys
import time
import urllib.parse


def main():
    out, base, path, body_file = sys.argv[1:]
    with open(body_file, encoding="utf-8") as f:
        body = f.readline().strip().encode()
    url = urllib.parse.urlsplit(base)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    conn = None
    with open(out, "w", encoding="utf-8") as f:
        f.write("epoch\trequests\tmax_ms\tover_10ms\tover_100ms\tother_statuses\n")
        second, n, worst, over10, over100, other = int(time.time()), 0, 0.0, 0, 0, []
        while not stop:
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException) as e:
                status = type(e).__name__
                conn = None
            ms = (time.monotonic() - t0) * 1000
            n += 1
            worst = max(worst, ms)
            over10 += ms > 10
            over100 += ms > 100
            if status != 200:
                other.append(str(status))
            now = int(time.time())
            if now != second:
                f.write(f"{second}\t{n}\t{worst:.1f}\t{over10}\t{over100}\t{','.join(other) or '-'}\n")
                f.flush()
                second, n, worst, over10, over100, other = now, 0, 0.0, 0, 0, []
            time.sleep(max(0.0, 0.02 - (time.monotonic() - t0)))


if __name__ == "__main__":
    main()
