#!/usr/bin/env python3
"""Every body of a file sent once, by CONNECTIONS keep-alive connections in parallel (each its
share, in order), before a measured run: bench/registry.sh's first pass over every token, so
that each session's first authenticate — its database read and its durable activity write — is
over before the warm-up and the measured seconds, which then see the steady state they claim
to (a heartbeat between its once-a-minute writes). Prints one JSON line: requests, seconds,
requests/s, p50/p99 ms, and the statuses.

    first_pass.py URL PATH BODIES_FILE CONNECTIONS
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse


def main():
    url, path, bodies_file, connections = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    bodies = [line.strip() for line in open(bodies_file, encoding="utf-8") if line.strip()]
    target = urllib.parse.urlparse(url)
    latencies, statuses, lock = [], {}, threading.Lock()

    def worker(k):
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
        mine = bodies[len(bodies) * k // connections: len(bodies) * (k + 1) // connections]
        local, codes = [], {}
        for body in mine:
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            res = conn.getresponse()
            res.read()
            local.append(time.perf_counter() - t0)
            codes[res.status] = codes.get(res.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(local)
            for c, n in codes.items():
                statuses[c] = statuses.get(c, 0) + n

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - start
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0
    print(json.dumps({
        "requests": len(latencies), "seconds": round(secs, 2),
        "rps": round(len(latencies) / secs, 1) if secs else 0,
        "p50_ms": round(pct(0.5), 2), "p99_ms": round(pct(0.99), 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }))


if __name__ == "__main__":
    main()
