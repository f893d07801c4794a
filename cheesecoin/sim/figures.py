"""The figures of a simulation: percentiles, the propagation limit, the summary."""

from __future__ import annotations

import heapq
import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence


def percentiles(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """{"p50", "p90", "p99", "max"} of ``values`` (nearest rank), in the values' unit,
    rounded to 0.1."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)

    return {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "max": round(ordered[-1], 1)}


def shortest_paths(source: int, edges: Mapping[int, Iterable[tuple]]) -> Dict[int, float]:
    """Dijkstra: the least total weight from ``source`` to each member reachable
    over ``edges`` ({member: [(neighbour, weight), ...]})."""
    best = {source: 0.0}
    heap = [(0.0, source)]
    while heap:
        dist, node = heapq.heappop(heap)
        if dist > best.get(node, math.inf):
            continue
        for neighbour, weight in edges.get(node, ()):
            candidate = dist + weight
            if candidate < best.get(neighbour, math.inf):
                best[neighbour] = candidate
                heapq.heappush(heap, (candidate, neighbour))
    return best


def stale_rate(mined: int, on_best: int) -> float:
    return round(1.0 - on_best / mined, 4) if mined else 0.0


def classic_stale_rate(mean_propagation: float, spacing: float) -> float:
    """Decker and Wattenhofer (2013): a cheese found while another is still
    spreading forks, with probability 1 - exp(-tau / S)."""
    return 1.0 - math.exp(-mean_propagation / spacing)


def mean(values: List[float]) -> float:
    return sum(values) / len(values) if values else 0.0
