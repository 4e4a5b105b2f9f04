"""serve_bench's targets: each (name, met, measured value) from the rows of one run."""
from __future__ import annotations

from bench import mlserver_peer


def checks(results: dict, cold: dict) -> list[tuple[str, bool, str]]:
    r = results
    found = []
    for clients in (1, 16):
        ours, bare, best = r[f"convlab/{clients}"], r[f"bare/{clients}"], mlserver_peer.best(r, clients)
        ceiling = ours["rps"] / bare["rps"]
        if clients == 16:
            found.append(("16 clients: throughput >= 90 % of the transport ceiling", ceiling >= 0.9,
                          f"{ceiling:.0%} ({ours['rps']:.0f} / {bare['rps']:.0f} req/s)"))
        extra = ours["p50"] - bare["p50"]
        limit = 0.12 if clients == 1 else 0.3
        found.append((f"{clients:>2} client(s): p50 <= ceiling p50 + {limit:g} ms", extra <= limit,
                      f"+{extra:.2f} ms ({ours['p50']:.2f} vs {bare['p50']:.2f} ms)"))
        if best:
            name, peer = best
            wanted = 2.5 if clients == 1 else 3.0
            versus = ours["rps"] / peer["rps"]
            found.append((f"{clients:>2} client(s): >= {wanted:g}x MLServer's best ({name})", versus >= wanted,
                          f"{versus:.2f}x"))
            found.append((f"{clients:>2} client(s): p50 no worse than MLServer's best", ours["p50"] <= peer["p50"],
                          f"{ours['p50']:.2f} vs {peer['p50']:.2f} ms ({peer['p50'] / ours['p50']:.2f}x lower)"))
        if f"naive/{clients}" in r:
            naive = ours["rps"] / r[f"naive/{clients}"]["rps"]
            found.append((f"{clients:>2} client(s): >= 50x the naive throughput", naive >= 50 or clients == 1,
                          f"{naive:.1f}x" + (" (target at 16 clients only)" if clients == 1 else "")))
    found.append(("p50 <= 2 ms at 1 client", r["convlab/1"]["p50"] <= 2.0, f"{r['convlab/1']['p50']:.2f} ms"))
    found.append(("cold start <= 1.5 s with ONNX", cold["onnx"] <= 1.5, f"{cold['onnx']:.2f} s"))
    return found
