"""Shared figures for the bench scripts: percentiles and a printed row."""

from __future__ import annotations

import statistics


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean in milliseconds of samples in seconds."""
    return {
        "p50": percentile(samples_s, 0.50) * 1000,
        "p95": percentile(samples_s, 0.95) * 1000,
        "p99": percentile(samples_s, 0.99) * 1000,
        "mean": statistics.fmean(samples_s) * 1000,
    }


def print_row(label: str, samples_s: list[float], elapsed_s: float) -> None:
    figures = summary_ms(samples_s)
    print(
        f"{label:<44} n={len(samples_s):<6} "
        f"p50={figures['p50']:7.3f}ms p95={figures['p95']:7.3f}ms p99={figures['p99']:7.3f}ms "
        f"throughput={len(samples_s) / elapsed_s:9.1f}/s"
    )
