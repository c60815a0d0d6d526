"""Small statistics and a plain-text table printer."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def median_ms(samples_ns: Sequence[int]) -> float:
    return statistics.median(samples_ns) / 1e6


def p95_ms(samples_ns: Sequence[int]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(samples_ns)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] / 1e6


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """Columns padded to their widest cell; ``right`` marks right-aligned columns."""
    align = list(right) if right is not None else [False] * len(headers)
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if a else c.ljust(w) for c, w, a in zip(cells, widths, align, strict=True)]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
