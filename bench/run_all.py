"""`make bench`: every scenario, one after the other, then every `ratio` line again at the end.

Scenarios with workers share Redis DB 6's queues, so they never run at the same time.
`--quick` runs smaller sizes (listing up to 100k, the batch page at 20k jobs, fewer jobs) for a
check in a few minutes.
Output of each script goes to var/h-bench/out/<name>.txt as well as to the terminal.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "h-bench" / "out"

# (name, script, full args, quick args); scripts owned by other helpers run only if present.
SCENARIOS: list[tuple[str, str, list[str], list[str]]] = [
    ("1-pipeline", "bench/pipeline.py", ["--jobs", "20"], ["--jobs", "8", "--reps", "5"]),
    ("2-queue", "bench/queue.py", [], []),
    ("3-listing", "bench/listing.py", [], ["--scale", "0.1"]),
    ("4-batch-create", "bench/batch_create.py", [], ["--jobs", "300"]),
    ("5-throughput", "bench/throughput.py", [], ["--batches", "2", "--jobs", "8", "--noops", "300"]),
    ("6-7-portal", "bench/portal_pages.py", [], ["--jobs", "2000", "--page-large", "20000"]),
    ("8-embedded-pipeline", "bench/pipeline.py", ["--db", "sqlite", "--jobs", "20"], ["--db", "sqlite", "--jobs", "8"]),
    ("backends", "bench/backends.py", [], []),
    ("9-scale", "bench/scale.py", [], ["--processes", "1,2,4", "--jobs", "8", "--reps", "1"]),
    ("19-sdk-loop", "bench/sdk_loop.py", [], ["--iterations", "5"]),
    ("19-sdk-loop-embedded", "bench/sdk_loop.py", ["--db", "sqlite"], ["--db", "sqlite", "--iterations", "5"]),
    ("19-held-load", "bench/held_load.py", [], ["--held", "100", "--gets", "50"]),
    ("19-portal-push", "bench/portal_push.py", [], ["--jobs", "5"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", help="names (prefixes) of the scenarios to run")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    ratios: list[str] = []
    failed: list[str] = []
    for name, script, full, quick in SCENARIOS:
        if args.only and not any(name.startswith(p) for p in args.only):
            continue
        if not (ROOT / script).exists():
            print(f"== {name}: {script} not present, skipped", flush=True)
            continue
        # As modules (-m bench.x): the repository root, not bench/, is then first on sys.path,
        # so bench/queue.py cannot shadow the standard library's `queue`.
        module = script.removesuffix(".py").replace("/", ".")
        command = [sys.executable, "-m", module, *(quick if args.quick else full)]
        print(f"== {name}: {' '.join(command[2:])}", flush=True)
        t0 = time.perf_counter()
        with open(OUT / f"{name}.txt", "w") as log:
            proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                print(line, end="", flush=True)
                log.write(line)
                if line.startswith("ratio "):
                    ratios.append(f"{line.rstrip()}  [{name}]")
            proc.wait()
        print(f"== {name}: exit {proc.returncode} after {time.perf_counter() - t0:.0f} s", flush=True)
        if proc.returncode != 0:
            failed.append(name)
    print("\n== summary", flush=True)
    for line in ratios:
        print(line)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
