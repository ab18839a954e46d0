"""An independent, loop-by-loop implementation of the SPEC A.1 model for tests."""

from __future__ import annotations

import math


def pai(n, a, b):
    return 1.0 / (1.0 + math.exp(-a * (n - b)))


def user_latencies(inst: dict, granted: list[bool], split: list[int], model: str = "paper") -> list[float]:
    """Latency of every user of a SPEC D.1 dictionary (defaults already filled in)."""
    N, G = inst["N"], inst["G"]
    ke, he = inst["edge"]["k"], inst["edge"]["h"]
    rate = inst["link"]["eta"] * inst["link"]["W_max"]
    b = sum(granted)
    # the edge computes the offloaded steps a cached output does not cover
    offloaded = [max(0, N - n - u.get("cached_steps", 0)) if g else 0 for g, n, u in zip(granted, split, inst["users"])]
    out = []
    for i, u in enumerate(inst["users"]):
        local = u["k"] + u["h"]
        lat = inst["K"] - u["request_time"] + split[i] * local
        if granted[i]:
            lat += (u["prompt_bits"] + u["intermediate_bits"]) * b / rate
            if model == "paper":
                lat += offloaded[i] * (ke * b / G + he)
            else:
                for s in range(1, offloaded[i] + 1):
                    batch = sum(1 for m in offloaded if m >= s)
                    lat += ke * batch / G + he
        out.append(lat)
    return out


def objective(inst: dict, granted: list[bool], split: list[int], model: str = "paper") -> float:
    lats = user_latencies(inst, granted, split, model)
    a, b = inst["pai"]["a"], inst["pai"]["b"]
    return sum(u["alpha"] * pai(n, a, b) - L for u, n, L in zip(inst["users"], split, lats))
