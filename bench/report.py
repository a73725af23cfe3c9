"""Turning the measurements into the screen table, the ratios against the baselines, and the targets of issues #7
and #19 (reported, never asserted)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.scenarios import growth_exponent

SCENARIO_ORDER = ["payroll_0ms", "payroll_25ms", "payroll_150ms", "rerun", "incremental_history",
                  "incremental_month", "incremental_empty", "rate_limited"]
CONTENDER_ORDER = ["stsync", "stsync_1", "stsync_spread", "naive", "bare_bulk", "bare_read"]
PAYROLL_CONTENDERS = ["stsync", "naive", "bare_bulk"]


@dataclass(frozen=True)
class Target:
    name: str
    measured: float | None
    goal: str
    met: bool | None  # None: could not be measured in this run

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.name, "measured": self.measured, "goal": self.goal, "met": self.met}


def per_100(c: dict[str, Any]) -> float | None:
    return c["procore_calls"] / c["entries"] * 100 if c.get("entries") else None


def rate(c: dict[str, Any]) -> float | None:
    return c["entries"] / c["wall_s"] if c.get("entries") and c.get("wall_s") else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _get(scenarios: dict[str, Any], scenario: str, contender: str) -> dict[str, Any] | None:
    return (scenarios.get(scenario) or {}).get(contender)


def _wall(c: dict[str, Any] | None) -> float | None:
    return c["wall_s"] if c else None


def ratios(scenarios: dict[str, Any], memory: list[dict[str, Any]]) -> dict[str, float | None]:
    """Ratios between contenders measured in this same run."""
    s0, n0, b0 = (_get(scenarios, "payroll_0ms", c) for c in PAYROLL_CONTENDERS)
    s25, n25, b25 = (_get(scenarios, "payroll_25ms", c) for c in PAYROLL_CONTENDERS)
    s150, n150, b150 = (_get(scenarios, "payroll_150ms", c) for c in PAYROLL_CONTENDERS)
    rerun, bare_read = _get(scenarios, "rerun", "stsync"), _get(scenarios, "rerun", "bare_read")
    hist, month = _get(scenarios, "incremental_history", "stsync"), _get(scenarios, "incremental_month", "stsync")
    empty = _get(scenarios, "incremental_empty", "stsync")
    out: dict[str, float | None] = {
        "stsync_procore_calls_per_100_entries": round(per_100(s0), 3) if s0 and per_100(s0) else None,
        "naive_procore_calls_per_100_entries": round(per_100(n0), 3) if n0 and per_100(n0) else None,
        "naive_over_stsync_procore_calls_per_entry": _ratio(per_100(n0) if n0 else None,
                                                            per_100(s0) if s0 else None),
        "stsync_over_naive_entries_per_s_25ms": _ratio(rate(s25) if s25 else None, rate(n25) if n25 else None),
        "stsync_over_naive_entries_per_s_150ms": _ratio(rate(s150) if s150 else None,
                                                        rate(n150) if n150 else None),
        "stsync_over_naive_entries_per_s_0ms": _ratio(rate(s0) if s0 else None, rate(n0) if n0 else None),
        "stsync_over_bare_bulk_wall_0ms": _ratio(_wall(s0), _wall(b0)),
        "stsync_over_bare_bulk_wall_25ms": _ratio(_wall(s25), _wall(b25)),
        "stsync_over_bare_bulk_wall_150ms": _ratio(_wall(s150), _wall(b150)),
        "stsync_1_over_bare_bulk_wall_0ms": _ratio(_wall(_get(scenarios, "payroll_0ms", "stsync_1")), _wall(b0)),
        "stsync_1_over_bare_bulk_wall_150ms": _ratio(_wall(_get(scenarios, "payroll_150ms", "stsync_1")),
                                                     _wall(b150)),
        "rerun_over_first_run_wall": _ratio(_wall(rerun), _wall(s0)),
        "rerun_over_bare_read_wall": _ratio(_wall(rerun), _wall(bare_read)),
        "incremental_history_over_month_wall": _ratio(_wall(hist), _wall(month)),
        "incremental_history_over_empty_wall": _ratio(_wall(hist), _wall(empty)),
        "incremental_history_over_empty_calls": _ratio(
            (hist["procore_calls"] + hist["servicetrade_calls"]) if hist else None,
            (empty["procore_calls"] + empty["servicetrade_calls"]) if empty else None),
        "memory_growth_exponent": growth_exponent(memory),
    }
    for contender in ("stsync", "stsync_spread"):
        limited = _get(scenarios, "rate_limited", contender)
        key = "rate_limited" if contender == "stsync" else "rate_limited_spread"
        out[f"{key}_fraction_of_ideal"] = limited.get("fraction_of_ideal") if limited else None
        out[f"{key}_429"] = limited.get("procore_429") if limited else None
    return out


def targets(scenarios: dict[str, Any], memory: list[dict[str, Any]], r: dict[str, float | None]) -> list[Target]:
    rerun = _get(scenarios, "rerun", "stsync")
    near_20k = min(memory, key=lambda p: abs(p["intervals"] - 20_000)) if memory else None

    def check(value: float | None, ok: bool) -> bool | None:
        return None if value is None else ok

    calls = r["stsync_procore_calls_per_100_entries"]
    fewer = r["naive_over_stsync_procore_calls_per_entry"]
    t25 = r["stsync_over_naive_entries_per_s_25ms"]
    t0 = r["stsync_over_bare_bulk_wall_0ms"]
    t150 = r["stsync_over_bare_bulk_wall_150ms"]
    ideal, too_many = r["rate_limited_fraction_of_ideal"], r["rate_limited_429"]
    rerun_writes = float(rerun["procore_write_calls"]) if rerun else None
    rerun_read = r["rerun_over_bare_read_wall"]
    year = r["incremental_history_over_month_wall"]
    rss = near_20k["peak_rss_mb"] if near_20k else None
    k = r["memory_growth_exponent"]
    return [
        Target("payroll at 150 ms: wall time, stsync / bare bulk", t150, "<= 0.5x",
               check(t150, t150 is not None and t150 <= 0.5)),
        Target("rate-limited, two workers: entries/h, share of the ideal 360,000", ideal, ">= 0.95",
               check(ideal, ideal is not None and ideal >= 0.95)),
        Target("rate-limited, two workers: answers 429", too_many, "= 0",
               check(too_many, too_many is not None and too_many == 0)),
        Target("re-run: Procore write calls", rerun_writes, "= 0",
               check(rerun_writes, rerun_writes is not None and rerun_writes == 0)),
        Target("re-run wall time, stsync / bare_read", rerun_read, "<= 1.5x",
               check(rerun_read, rerun_read is not None and rerun_read <= 1.5)),
        Target("Procore calls per 100 entries posted (stsync, payroll 0 ms, look-ups included)", calls, "<= 1.3",
               check(calls, calls is not None and calls <= 1.3)),
        Target(f"peak RSS at {near_20k['intervals'] if near_20k else '~20,000'} intervals (MB)", rss, "< 300",
               check(rss, rss is not None and rss < 300)),
        Target("nightly run, a year of history / a month (wall; no dearer, within the run-to-run noise)", year,
               "<= 1.1x", check(year, year is not None and year <= 1.1)),
        Target("wall time at 0 ms, stsync / bare bulk", t0, "<= 1.5x", check(t0, t0 is not None and t0 <= 1.5)),
        Target("Procore calls per entry, naive / stsync", fewer, ">= 60x",
               check(fewer, fewer is not None and fewer >= 60)),
        Target("entries/s at 25 ms, stsync / naive", t25, ">= 5x", check(t25, t25 is not None and t25 >= 5)),
        Target("peak RSS growth exponent over the memory series", k, "< 1 (sub-linear)",
               check(k, k is not None and k < 1)),
    ]


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table_rows(scenarios: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name in SCENARIO_ORDER:
        for contender in CONTENDER_ORDER:
            c = _get(scenarios, name, contender)
            if c is None:
                continue
            note = ""
            if c.get("subset_of_entries"):
                note = f"subset: first {c['subset_of_entries']} entries"
            elif name == "rate_limited":
                note = (f"{'spent at once' if contender == 'stsync' else 'calls spread'}: "
                        f"{c['entries_per_hour']:,} entries/h = {c['fraction_of_ideal']:.0%} of ideal "
                        f"{c['ideal_entries_per_hour']:,}; {c['procore_calls_per_hour']:,} calls/h; "
                        f"{c['procore_429']} x 429")
            elif name == "rerun" and contender == "bare_read":
                note = (f"read {c.get('clock_events_read', 0):,} clock events, "
                        f"{c.get('procore_entries_read', 0):,} Procore entries")
            elif name == "rerun":
                note = f"{c.get('unchanged', 0):,} unchanged"
            if contender.startswith("stsync") and name != "rate_limited" and c.get("processes"):
                workers = f"{c['processes']} worker process{'es' if c['processes'] > 1 else ''}"
                note = f"{workers}; {note}" if note else workers
            if c.get("procore_lookup_calls"):
                note = f"{note}; " if note else note
                note += f"{c['procore_lookup_calls']} look-up calls"
            rows.append([
                name, contender, f"{c['runs']}", _fmt(c["wall_s"]), f"{c['entries']:,}",
                _fmt(rate(c), 0), f"{c['procore_calls']:,}", f"{c['procore_write_calls']:,}",
                _fmt(per_100(c)), f"{c['servicetrade_calls']:,}", _fmt(c["peak_rss_mb"], 0), note,
            ])
    return rows


HEADER = ["scenario", "contender", "runs", "wall s (median)", "entries", "entries/s", "Procore calls",
          "Procore writes", "Procore calls /100 entries", "ServiceTrade calls", "peak RSS MB", "note"]


def text_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def markdown_table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def memory_rows(memory: list[dict[str, Any]]) -> list[list[str]]:
    return [[f"{p['intervals']:,}", f"{p['projects']} x {p['technicians']}", f"{p['entries']:,}",
             _fmt(p["wall_s"]), _fmt(p["peak_rss_mb"], 0)] for p in memory]


MEMORY_HEADER = ["intervals", "projects x technicians", "entries", "wall s", "peak RSS MB"]
TARGET_HEADER = ["target", "measured", "goal", "met"]


def target_rows(ts: list[Target]) -> list[list[str]]:
    return [[t.name, _fmt(t.measured, 3 if t.measured is not None and abs(t.measured) < 10 else 1),
             t.goal, {True: "yes", False: "NO", None: "n/a"}[t.met]] for t in ts]


def render(results: dict[str, Any], markdown: bool = False) -> str:
    table = markdown_table if markdown else text_table
    ts = [Target(t["target"], t["measured"], t["goal"], t["met"]) for t in results["targets"]]
    parts = [table(table_rows(results["scenarios"]), HEADER)]
    if results["memory_series"]:
        parts.append(table(memory_rows(results["memory_series"]), MEMORY_HEADER))
    parts.append(table(target_rows(ts), TARGET_HEADER))
    page = results.get("console")
    if page:
        parts.append(f"console clock events page ({page['events']:,} events in the window): median "
                     f"{page['median_ms']:.0f} ms over {page['requests']} requests (fastest {page['min_ms']:.0f}, "
                     f"slowest {page['max_ms']:.0f}); the service call alone {page['service_median_ms']:.0f} ms")
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.report [results.json]`: the tables in Markdown, for bench/README.md."""
    import json
    import sys
    from pathlib import Path

    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path(__file__).resolve().parent / "results.json"
    results = json.loads(path.read_text())
    m = results["machine"]
    print(f"{results['profile']} run of {m['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, "
          f"{m['os']}, Python {m['python']}, PostgreSQL {m['postgresql']} ({results['elapsed_s']:.0f} s)\n")
    print(render(results, markdown=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
