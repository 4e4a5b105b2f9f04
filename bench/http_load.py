"""The serving benchmark's client: keep-alive connections from threads, one request at a time each.

Every server is driven by this same client, so its own cost (about the same per request whatever
the server) is in every row alike. `interleaved` runs several servers in turns, a short burst each,
round after round, so that load from other processes on the machine hits them alike.
"""
from __future__ import annotations

import http.client
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Target:
    """A server under load: where to POST, and the bodies to send (cycled)."""
    name: str
    port: int
    bodies: list
    path: str = "/invocations"
    content_type: str = "image/png"
    pid: int | None = None  # the server process: its CPU time (with its children's) is reported


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds so far of a process and its live descendants, from /proc (Linux);
    0 without a pid."""
    if pid is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(child) for child in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


@dataclass
class Load:
    latencies: list = field(default_factory=list)
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0

    def add(self, other: "Load") -> None:
        self.latencies.extend(other.latencies)
        self.seconds += other.seconds
        self.server_cpu += other.server_cpu
        self.client_cpu += other.client_cpu

    def summary(self) -> dict:
        ordered = sorted(self.latencies)
        return {"requests": len(ordered), "rps": len(ordered) / self.seconds,
                "p50": statistics.median(ordered) * 1000,
                "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
                "server_cpu_ms": self.server_cpu * 1000 / len(ordered),
                "client_cpu_ms": self.client_cpu * 1000 / len(ordered)}


def drive(target: Target, clients: int, total: int, offset: int = 0) -> Load:
    """`total` POSTs from `clients` threads, each on its own keep-alive connection."""
    per_client = max(1, total // clients)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    bodies = target.bodies
    headers = {"Content-Type": target.content_type}

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", target.port, timeout=60)
        mine = []
        barrier.wait()
        for i in range(per_client):
            body = bodies[(offset + index * per_client + i) % len(bodies)]
            started = time.perf_counter()
            connection.request("POST", target.path, body, headers)
            response = connection.getresponse()
            payload = response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                errors.append(f"{response.status} {payload[:200]!r}")
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    cpu_before, client_before = cpu_seconds(target.pid), time.process_time()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    server_cpu, client_cpu = cpu_seconds(target.pid) - cpu_before, time.process_time() - client_before
    if errors:
        raise RuntimeError(f"{target.name}: {len(errors)} requests failed: {errors[:3]}")
    return Load(latencies, elapsed, server_cpu, client_cpu)


def interleaved(targets: list[Target], clients: int, total: int, rounds: int) -> dict[str, dict]:
    """`total` requests per server in `rounds` bursts, servers taking turns in each round."""
    loads = {target.name: Load() for target in targets}
    for round_index in range(rounds):
        order = targets if round_index % 2 == 0 else targets[::-1]
        for target in order:
            loads[target.name].add(drive(target, clients, total // rounds, offset=round_index * 97))
    return {name: load.summary() for name, load in loads.items()}
