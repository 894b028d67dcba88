"""Run every benchmark, one after the other (they share a 2-core machine badly).

    python bench/run_all.py            # full runs (about 15 minutes; 1,000,000 enrollments)
    python bench/run_all.py --quick    # small runs (about 2 minutes), a smoke test
    python bench/run_all.py --write    # and update each script's section of bench/README.md
    python bench/run_all.py --only send_throughput,due_claim

Each script is also runnable alone (see its --help). bench/http_enroll.py and
bench/reply_latency.py (speed to lead over HTTP, reply -> stop) run last, without --write
(they append to the README with their own --append).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (script, arguments for a quick run); ours take --quick and --write
OURS = ["send_throughput", "due_claim", "first_touch", "import_csv"]
OTHERS = {"http_enroll": ["--leads", "20"], "reply_latency": ["--leads", "10"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", action="store_true", help="update bench/README.md")
    ap.add_argument("--only", default="", help="comma-separated script names")
    args = ap.parse_args()
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    failed = []
    for name in [*OURS, *OTHERS]:
        if only and name not in only:
            continue
        script = HERE / f"{name}.py"
        if not script.exists():
            continue
        extra = ([*(["--quick"] if args.quick else []), *(["--write"] if args.write else [])]
                 if name in OURS else (OTHERS[name] if args.quick else []))
        print(f"== {name} {' '.join(extra)}", flush=True)
        start = time.monotonic()
        code = subprocess.run([sys.executable, str(script), *extra], check=False).returncode
        print(f"== {name}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
