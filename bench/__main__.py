"""`python -m bench` (make bench): stsync against two hand-made baselines on the project's emulators.

    python -m bench            # full: ~20,000 intervals, 3 runs where affordable (~6 minutes)
    python -m bench --quick    # the same scenarios on small worlds, one run each (under a minute)
    python -m bench --tiny     # smallest worlds; what tests/test_bench_smoke.py runs

Needs PostgreSQL and Redis on 127.0.0.1 (`make services`). Prints a table and writes bench/results.json
(or --out). See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.harness import Harness, machine
from bench.report import ratios, render, targets
from bench.scenarios import PROFILES, SCENARIO_NAMES, Scenarios

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small worlds, one run each (under a minute)")
    size.add_argument("--tiny", action="store_true", help="the smallest worlds (the smoke test)")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated subset of: {', '.join(SCENARIO_NAMES)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the results JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    profile = PROFILES["tiny" if args.tiny else "quick" if args.quick else "full"]
    only = None
    if args.only:
        only = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = only - set(SCENARIO_NAMES)
        if unknown:
            parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIO_NAMES)}")

    started = time.monotonic()
    info = machine()
    with Harness(verbose=not args.quiet) as hx:
        runner = Scenarios(hx, profile, only)
        runner.run()
    r = ratios(runner.results, runner.memory)
    results = {
        "machine": info,
        "profile": profile.name,
        "scenarios": runner.results,
        "memory_series": runner.memory,
        "console": runner.console,
        "ratios": r,
        "targets": [t.as_dict() for t in targets(runner.results, runner.memory, r)],
        "notes": runner.notes,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\n{profile.name} run took {results['elapsed_s']:.0f} s on {info['cpu']} ({info['cores']} cores); "
          f"results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
