"""The demo generator at scale: seconds per million records at growing sizes (the time
must grow linearly). ``python bench/generator.py 1000000 2000000 4000000``."""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines.demo import generate


def main(sizes: list[int]) -> None:
    print("| records | seconds | seconds per million | peak RSS GiB |")
    print("|---|---|---|---|")
    for n in sizes:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            manifest = generate(Path(out), records=n, seed=42, events_per_person=0)  # the sources, as measured before events
            took = time.perf_counter() - start
            written = sum(manifest.records_per_source.values())
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
            print(f"| {written:,} | {took:.1f} | {took / written * 1e6:.1f} | {peak:.1f} |", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1_000_000, 2_000_000, 4_000_000])
