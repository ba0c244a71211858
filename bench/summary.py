"""The figures a gateway benchmark run is judged by, their summary over repeated runs, and the
issue's targets (README, "Performance"). No side effects: bench_gateway.py sets up a whole
environment on import, this module only computes."""

from __future__ import annotations

import statistics

# Added latency in ms, the gateway's CPU per call as a ratio of the upstream's, RSS in MB.
TARGETS = {"added_p50_ms": 2.0, "added_p99_ms": 5.0, "cpu_ratio": 1.0, "rss_mb": 150.0}


def _figures(report: dict) -> dict[str, float]:
    """The figures one run is judged by (and summarised over with --repeat)."""
    figures = {
        "added_p50_ms": report["added_ms"]["p50"],
        "added_p99_ms": report["added_ms"]["p99"],
        "gateway_to_direct_p50": report["latency_ms"]["gateway"]["p50"]
        / report["latency_ms"]["direct"]["p50"],
        "gateway_cpu_ms_per_call": report["cpu_ms_per_call"]["gateway_ms_per_call"],
        "upstream_cpu_ms_per_direct_call": report["cpu_ms_per_call"]["upstream_ms_per_direct_call"],
        "cpu_ratio": report["cpu_ratio_gateway_to_upstream"],
        "rss_mb": report["gateway_peak_rss_mb"],
    }
    if "floor_added_ms" in report:  # reports from before the bare proxy and the commit probe
        figures["floor_added_p50_ms"] = report["floor_added_ms"]["p50"]
        figures["audit_commit_p50_ms"] = report["audit_commit_ms"]["p50"]
        figures["gateway_own_added_p50_ms"] = (
            report["added_ms"]["p50"]
            - report["floor_added_ms"]["p50"]
            - report["audit_commit_ms"]["p50"]
        )
    for level, values in report["calls_per_s"].items():
        figures[f"calls_per_s_ratio_c{level}"] = values["ratio"]
    for level, values in report.get("cpu_ms_per_call_by_level", {}).items():
        figures[f"cpu_ratio_c{level}"] = values["ratio"]
    return figures


def summarize(reports: list[dict]) -> dict[str, dict[str, float]]:
    """Median, min and max of each figure over the runs."""
    runs = [_figures(report) for report in reports]
    return {
        name: {
            "median": statistics.median(run[name] for run in runs),
            "min": min(run[name] for run in runs),
            "max": max(run[name] for run in runs),
        }
        for name in runs[0]
    }


def verdicts(summary: dict[str, dict[str, float]]) -> dict[str, str]:
    """Each target judged on the median over the runs: "met" or "not met"."""
    return {
        name: "met" if summary[name]["median"] <= limit else "not met"
        for name, limit in TARGETS.items()
    }
