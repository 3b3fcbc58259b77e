"""Latency of the dashboard server on a large summary and on a folder of many summaries.

1. Writes, through the store API, one summary of 20,000 samples x 3 explainers x 2 explained labels (10 classes,
   16x16 maps, two metrics), and a base directory of 500 small summaries.
2. Starts the real server (``xaiboard serve``, waitress) on a free port in a separate process.
3. Measures p50/p99 of ``GET /api/v1/summaries/<id>/samples`` (a page of 50 with a label filter and a sort) with 8
   concurrent clients on keep-alive connections, twice: new filters first (random label pairs, type sets and
   sorts, hardly ever repeated), then paging (random label, sort key and page, so orders and the JSON of samples
   already sent are re-used),
   and the time of ``GET /api/v1/summaries`` over the 500 summaries (the first request after start-up and later
   ones).

Goals on a 2-core machine: samples p99 < 100 ms, list < 1 s. Run: ``python bench/server_latency.py``.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from xaiboard.store import (
    Batch,
    PredictionRecord,
    SaliencyRecord,
    SampleRecord,
    ScoreRecord,
    SummaryWriter,
)

CLASSES = [f"class_{i}" for i in range(10)]
EXPLAINERS = ["Gradient", "GradCAM", "IntegratedGradients"]
METRICS = [("InsertionAUC", True), ("DeletionAUC", False)]
SORTS = ["-prob", "prob", "-uncertainty", "name", "-score:GradCAM:InsertionAUC", "score:Gradient:DeletionAUC"]
GOAL_P99_MS = 100.0
GOAL_LIST_S = 1.0


def write_large_summary(directory: Path, samples: int, batch_size: int = 500, size: int = 16) -> float:
    """The big summary: every sample has 10 predictions, 2 explained labels with 3 maps and 2 scores each."""
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    writer = SummaryWriter.create(directory, name="large", overwrite=True)
    writer.set_labels(CLASSES)
    for name in EXPLAINERS:
        writer.register_explainer(name, {})
    for name, higher in METRICS:
        writer.register_metric(name, higher, (0.0, 1.0))
    writer.update_run(progress_total=samples, threshold=0.5, top_k=2, uncertainty={"method": "mc-dropout"})
    image = rng.integers(0, 256, (size, size), dtype=np.uint8)
    maps = rng.normal(size=(64, size, size))
    for first in range(0, samples, batch_size):
        batch = Batch()
        for sample in range(first, min(first + batch_size, samples)):
            truth = sample % len(CLASSES)
            other = (truth + 1 + sample % 3) % len(CLASSES)
            probs = rng.dirichlet(np.ones(len(CLASSES)))
            batch.samples.append(SampleRecord(sample, f"img_{sample:05d}.png", image, [truth]))
            kinds = {truth: "TP" if probs[truth] >= probs.max() else "FN", other: ("FP", "TN")[sample % 2]}
            for label in range(len(CLASSES)):
                sd = float(rng.uniform(0.0, 0.2))
                batch.predictions.append(PredictionRecord(sample, label, float(probs[label]), label == truth,
                                                          kinds.get(label), sd, 0.0, 1.0))
            for label in kinds:
                for e, explainer in enumerate(EXPLAINERS):
                    batch.saliency.append(SaliencyRecord(sample, label, explainer, maps[(sample + e) % 64]))
                    for metric, _ in METRICS:
                        batch.scores.append(ScoreRecord(explainer, metric, sample, label, float(rng.random())))
        writer.write_batch(batch)
    writer.close("complete")
    return time.perf_counter() - start


def write_small_summaries(base: Path, count: int) -> float:
    start = time.perf_counter()
    image = np.zeros((8, 8), np.uint8)
    for index in range(count):
        writer = SummaryWriter.create(base / f"team-{index // 50:02d}" / f"run-{index:03d}", overwrite=True)
        writer.set_labels(["a", "b"])
        writer.register_explainer("Gradient", {})
        writer.register_metric("InsertionAUC", True, (0.0, 1.0))
        writer.write_batch(Batch(samples=[SampleRecord(0, "x.png", image, [0])],
                                 predictions=[PredictionRecord(0, 0, 0.9, True, "TP")],
                                 saliency=[SaliencyRecord(0, 0, "Gradient", np.eye(8))],
                                 scores=[ScoreRecord("Gradient", "InsertionAUC", 0, 0, 0.5)]))
        writer.close("complete")
    return time.perf_counter() - start


class Server:
    """``xaiboard serve BASE --port 0`` in a child process; the port is read from what it prints."""

    def __init__(self, base: Path) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from xaiboard.server.cli import main; main()", "serve", str(base), "--port", "0",
             "--reload-interval", "5"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        assert self.process.stderr is not None
        for line in self.process.stderr:
            found = re.search(r"http://[^:]+:(\d+)/", line)
            if found:
                self.port = int(found.group(1))
                break
        else:
            raise RuntimeError(f"the server did not start (exit code {self.process.wait()})")
        self.startup = time.perf_counter() - self.started
        threading.Thread(target=self.process.stderr.read, daemon=True).start()  # keep the pipe drained

    def get(self, path: str, connection: http.client.HTTPConnection | None = None) -> tuple[int, bytes, float]:
        own = connection is None
        connection = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        start = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - start
        if own:
            connection.close()
        return response.status, body, elapsed

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used so far (Linux), to report CPU per request next to latencies that
        depend on what else the machine runs."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, AttributeError):
            return None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


TYPE_SETS = [types for n in (1, 2, 3) for types in itertools.combinations(("TP", "FN", "FP", "TN"), n)]


def paging_path(rng: random.Random, summary_id: str, total: int) -> str:
    """A page of 50 of one label, in one of six sorts: someone paging through a filtered view."""
    pages = max(1, total // len(CLASSES) // 50)
    return (f"/api/v1/summaries/{summary_id}/samples?labels={rng.randrange(len(CLASSES))}&sort={rng.choice(SORTS)}"
            f"&offset={50 * rng.randrange(pages)}&limit=50")


def fresh_path(rng: random.Random, summary_id: str, total: int) -> str:
    """A page of 50 of a filter hardly ever asked before (one or two labels, a set of types, a sort)."""
    labels = ",".join(str(label) for label in rng.sample(range(len(CLASSES)), rng.choice((1, 2))))
    types = ",".join(rng.choice(TYPE_SETS))
    return (f"/api/v1/summaries/{summary_id}/samples?labels={labels}&types={types}&sort={rng.choice(SORTS)}"
            f"&offset={50 * rng.randrange(4)}&limit=50")


def measure_samples(server: Server, summary_id: str, clients: int, per_client: int, make_path=paging_path,
                    seed: int = 0) -> tuple[list[float], int]:
    """Latencies (seconds) of filtered, sorted pages of 50 requested by ``clients`` threads at once."""
    total = json.loads(server.get(f"/api/v1/summaries/{summary_id}/samples?limit=1")[1])["total"]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(seed: int) -> None:
        rng = random.Random(seed)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        mine = []
        barrier.wait()
        for _ in range(per_client):
            status, body, elapsed = server.get(make_path(rng, summary_id, total), connection)
            if status != 200:
                errors[0] += 1
            mine.append(elapsed)
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(seed * 1000 + k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--summaries", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=100, help="requests per client")
    parser.add_argument("--keep", type=Path, help="write the data here and keep it (default: a temporary folder)")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="xaiboard-bench-"))
    try:
        large_base, small_base = root / "large", root / "many"
        seconds = write_large_summary(large_base / "large", args.samples)
        print(f"wrote {args.samples:,} samples x {len(EXPLAINERS)} explainers x 2 labels in {seconds:.1f} s")
        seconds = write_small_summaries(small_base, args.summaries)
        print(f"wrote {args.summaries} small summaries in {seconds:.1f} s")

        server = Server(large_base)
        try:
            summary_id = json.loads(server.get("/api/v1/summaries")[1])["summaries"][0]["id"]
            measure_samples(server, summary_id, args.clients, 5, seed=99)  # warm-up: the summary's index
            # New filters first, while few samples have been sent yet; then paging.
            cpu = [server.cpu_seconds()]
            fresh, fresh_errors = measure_samples(server, summary_id, args.clients, args.requests, fresh_path, seed=2)
            cpu.append(server.cpu_seconds())
            latencies, errors = measure_samples(server, summary_id, args.clients, args.requests, seed=1)
            cpu.append(server.cpu_seconds())
        finally:
            server.stop()

        server = Server(small_base)
        try:
            status, body, first = server.get("/api/v1/summaries?limit=1000")
            listed = json.loads(body)["total"]
            again = [server.get("/api/v1/summaries?limit=1000")[2] for _ in range(10)]
            startup = server.startup
        finally:
            server.stop()
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print(f"samples endpoint, pages of 50 with a label filter and a sort, {args.clients} concurrent clients:")
    runs = (("new filters (labels x types x sort)", fresh, fresh_errors, cpu[0], cpu[1]),
            ("paging (random label, sort, page)", latencies, errors, cpu[1], cpu[2]))
    for title, values, failed, cpu_before, cpu_after in runs:
        p50, p99 = percentile(values, 50) * 1000, percentile(values, 99) * 1000
        per_request = ("" if cpu_before is None or cpu_after is None
                       else f"   server CPU {(cpu_after - cpu_before) / len(values) * 1000:4.1f} ms/request")
        print(f"  {title:<38} {len(values)} requests ({failed} failed)   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
              f"goal p99 < {GOAL_P99_MS:.0f} ms: {'met' if p99 < GOAL_P99_MS else 'MISSED'} "
              f"(p99 / goal = {p99 / GOAL_P99_MS:.2f}){per_request}")
    try:
        load = "   load average of the machine: " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = ""
    print(f"  ({os.cpu_count()} CPUs{load})")
    print(f"summary list over {listed} summaries (status {status}):")
    print(f"  server start-up incl. first scan {startup:6.2f} s")
    print(f"  first request {first * 1000:7.1f} ms   later requests median {statistics.median(again) * 1000:7.1f} ms   "
          f"goal < {GOAL_LIST_S:.0f} s: {'met' if max(first, *again) < GOAL_LIST_S else 'MISSED'} "
          f"(slowest / goal = {max(first, *again) / GOAL_LIST_S:.2f})")


if __name__ == "__main__":
    main()
