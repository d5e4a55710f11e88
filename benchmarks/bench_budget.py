"""Measure what the snapshot budgets (netviz/budget.py) are set from, and what bombs cost.

    python3 benchmarks/bench_budget.py [--sockets 50000]

1. A synthetic machine with `--sockets` sockets (benchmarks/synth.py): its JSON bytes, its
   compressed and framed sizes, its JSON values (exact, outside strings), and the peak RSS of a
   fresh `python -m netviz stitch FILE` that loads it; then how many times each fits the limits.
2. Bomb files, each given to a fresh `python -m netviz stitch FILE`: a 79 KB frame of
   `[{},{},...]` (60 MB of JSON), the same as plain JSON, and a 1 MB frame inflating to 1 GiB.
   Prints each one's exit code, first line of error and peak RSS (from wait4 on a child forked
   by a small launcher, so that the benchmark's own memory is not counted).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zlib
from base64 import encodebytes
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.synth import make_fleet  # noqa: E402
from netviz import budget  # noqa: E402

MIB = 1 << 20

# Forks the measured command from a small process: Linux carries the peak RSS across exec.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write("\\nPEAK-RSS-KIB %d\\n" % usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def frame_of(payload: bytes) -> bytes:
    compressed = zlib.compress(payload, 6)
    header = f" 1 {len(compressed)} {hashlib.sha256(compressed).hexdigest()}\n".encode()
    return b"NETVIZ-SNAPSHOT-BEGIN" + header + encodebytes(compressed) + b"NETVIZ-SNAPSHOT-END\n"


def stitch_peak(path: Path, out: Path) -> tuple[int, str, float]:
    """Exit code, first error line and peak RSS (MiB) of `python -m netviz stitch path`."""
    result = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, "-m", "netviz", "stitch", str(path),
                             "-o", str(out)], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "300"})
    text, _, peak = result.stderr.rpartition("PEAK-RSS-KIB ")
    error = next((line for line in text.splitlines() if line.strip()), "")
    return result.returncode, error[:160], int(peak) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=50_000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="netviz-budget-") as work:
        work_dir = Path(work)
        document = make_fleet(machines=2, sockets_per_machine=options.sockets, seed=1)[0]
        text = json.dumps(document, separators=(",", ":"))
        sockets = sum(len(namespace["sockets"]) for namespace in document["namespaces"])
        del document
        compressed = len(zlib.compress(text.encode(), 6))
        framed = frame_of(text.encode())
        values = budget.json_values(text, limit=0)  # exact
        path = work_dir / "big.json"
        path.write_bytes(framed)
        code, error, peak = stitch_peak(path, work_dir / "big.dot")
        print(f"machine of {sockets:,} sockets: JSON {len(text):,} bytes, compressed {compressed:,}, "
              f"frame {len(framed):,}, JSON values {values:,}; stitch exit {code}, peak RSS {peak:.0f} MiB")
        print(f"  limits: output {budget.MAX_OUTPUT_BYTES // MIB} MiB ({budget.MAX_OUTPUT_BYTES / len(framed):.0f}x the frame), "
              f"JSON {budget.MAX_JSON_BYTES // MIB} MiB ({budget.MAX_JSON_BYTES / len(text):.0f}x), "
              f"values {budget.MAX_JSON_VALUES:,} ({budget.MAX_JSON_VALUES / values:.1f}x), "
              f"run output {budget.RUN_OUTPUT_BYTES // MIB} MiB")
        bomb = b"[" + b",".join([b"{}"] * 20_000_000) + b"]"
        bombs = {
            "parse bomb frame": frame_of(bomb),
            "parse bomb, plain JSON": bomb,
            "zip bomb frame (1 GiB of spaces)": frame_of(b" " * (1 << 30)),
        }
        for name, content in bombs.items():
            path = work_dir / "bomb.json"
            path.write_bytes(content)
            code, error, peak = stitch_peak(path, work_dir / "bomb.dot")
            print(f"{name}: {len(content):,} bytes; exit {code}, peak RSS {peak:.0f} MiB; {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
