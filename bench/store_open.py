"""Time to open a large summary and answer the first queries a user makes (info, first page, aggregates).

Writes a 10,000-sample summary (4 labels, 2 explainers, one metric) through the store API, then times
``Summary.open`` + ``overview()``, the first page sorted by probability, a filtered page and the aggregates,
each the median of several runs.

    python bench/store_open.py [--samples 10000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import start_summary, synthetic_batch  # noqa: E402
from xaiboard.store import Summary  # noqa: E402


def median_ms(action, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as base:
        directory = Path(base) / "large"
        start = time.perf_counter()
        writer = start_summary(directory, args.samples)
        for first in range(0, args.samples, 100):
            writer.write_batch(synthetic_batch(range(first, min(first + 100, args.samples))))
        writer.close("complete")
        size_mb = (directory / "xaiboard.db").stat().st_size / 1e6
        print(f"wrote {args.samples} samples ({size_mb:.1f} MB) in {time.perf_counter() - start:.1f} s")

        def open_and_describe() -> None:
            with Summary.open(directory) as summary:
                summary.overview()

        with Summary.open(directory) as summary:
            rows = [
                ("open + overview", median_ms(open_and_describe)),
                ("first page, sort=-prob", median_ms(lambda: summary.samples(sort="-prob", limit=50))),
                ("label 1 + FP, sort=-prob", median_ms(lambda: summary.samples(labels=[1], types=["FP"],
                                                                              sort="-prob", limit=50))),
                ("sort by a score", median_ms(lambda: summary.samples(sort="-score:Gradient:InsertionAUC",
                                                                     limit=50))),
                ("aggregates", median_ms(summary.aggregates)),
            ]
        for name, ms in rows:
            print(f"{name:>28}: {ms:8.1f} ms")


if __name__ == "__main__":
    main()
