#!/usr/bin/env python3
"""Process start -> first 200, for servers started cold one after another.

    coldstart.py ROUNDS NAME=URL=COMMAND [NAME=URL=COMMAND ...]

Each round starts every server in turn (the order alternating between
rounds): the clock starts just before the process is spawned and stops at
the first `200` answered to GET URL, polled every 0.5 ms over a fresh
connection; then the server is stopped (SIGTERM, SIGKILL after 5 s) before
the next starts. A first round, not counted, warms the page cache. Prints
one line per server: the median, the fastest and the slowest time, and
every round's time, in ms.
"""
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse


def first_200(url, proc, deadline_s=30.0):
    u = urllib.parse.urlsplit(url)
    request = f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n\r\n".encode()
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited ({proc.returncode}) before answering {url}")
        try:
            with socket.create_connection((u.hostname, u.port), timeout=5) as s:
                s.sendall(request)
                head = s.recv(64)
                if head.startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.0005)
    raise SystemExit(f"no 200 from {url} within {deadline_s} s")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main():
    rounds = int(sys.argv[1])
    servers = [arg.split("=", 2) for arg in sys.argv[2:]]
    times = {name: [] for name, _, _ in servers}
    for r in range(-1, rounds):
        order = servers if r % 2 == 0 else servers[::-1]
        for name, url, command in order:
            t0 = time.monotonic()
            proc = subprocess.Popen(
                shlex.split(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            first_200(url, proc)
            if r >= 0:
                times[name].append((time.monotonic() - t0) * 1000)
            stop(proc)
            time.sleep(0.2)
    for name, _, _ in servers:
        t = times[name]
        print(
            f"{name}: median {statistics.median(t):.1f} ms, min {min(t):.1f}, max {max(t):.1f}"
            f"  ({' '.join(f'{x:.1f}' for x in t)})"
        )


main()
