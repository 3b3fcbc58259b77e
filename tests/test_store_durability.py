"""A killed writer leaves a readable, resumable summary; a finished one opens without ever writing."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap

from pathlib import Path

from conftest import start_summary, synthetic_batch
from xaiboard.store import Summary, SummaryWriter

TOTAL = 400
BATCH = 4

WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from conftest import start_summary, synthetic_batch
    from pathlib import Path
    writer = start_summary(Path({directory!r}), {total})
    for start in range(0, {total}, {batch}):
        writer.write_batch(synthetic_batch(range(start, start + {batch})))
        print(start + {batch}, flush=True)
        time.sleep(0.01)
    """
)


def kill_writer_midway(directory: Path, batches_before_kill: int) -> None:
    script = WRITER_SCRIPT.format(tests=str(Path(__file__).parent), directory=str(directory), total=TOTAL,
                                  batch=BATCH)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for _ in range(batches_before_kill):
        assert process.stdout.readline(), "the writer stopped before it was killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def test_sigkill_leaves_a_resumable_summary(tmp_path):
    directory = tmp_path / "killed"
    kill_writer_midway(directory, batches_before_kill=5)

    with Summary.open(directory) as summary:
        run = summary.run()
        done = summary.counts()["num_samples"]
        assert run.status == "running"
        assert run.progress_total == TOTAL
        assert 5 * BATCH <= done < TOTAL and done % BATCH == 0, "only whole batches are committed"
        assert run.progress_done == done
        assert summary.counts()["num_saliency_maps"] == sum(
            len(synthetic_batch(range(s, s + BATCH)).saliency) for s in range(0, done, BATCH))

    writer = SummaryWriter.resume(directory)
    skipped = writer.done_sample_ids()
    assert skipped == set(range(done))
    for start in range(0, TOTAL, BATCH):
        if start not in skipped:
            writer.write_batch(synthetic_batch(range(start, start + BATCH)))
    writer.close("complete")

    with Summary.open(directory) as summary:
        counts = summary.counts()
        expected = [synthetic_batch(range(s, s + BATCH)) for s in range(0, TOTAL, BATCH)]
        assert counts["num_samples"] == TOTAL
        assert summary.sample_ids() == list(range(TOTAL))
        assert counts["num_predictions"] == sum(len(b.predictions) for b in expected)
        assert counts["num_saliency_maps"] == sum(len(b.saliency) for b in expected)
        assert counts["num_scores"] == sum(len(b.scores) for b in expected)
        assert (summary.run().status, summary.run().progress_done) == ("complete", TOTAL)


def test_live_run_is_readable_while_writing(tmp_path):
    directory = tmp_path / "live"
    writer = start_summary(directory, 8)
    writer.write_batch(synthetic_batch(range(4)))
    with Summary.open(directory) as summary:
        assert (summary.run().status, summary.num_samples()) == ("running", 4)
        writer.write_batch(synthetic_batch(range(4, 8)))
        assert summary.num_samples() == 8, "a reader sees batches committed after it opened"
        writer.close("complete")
        assert summary.run().status == "complete"
        assert sorted(p.name for p in directory.iterdir()) == ["xaiboard.db"], \
            "an open reader does not keep the finished run in WAL mode"


def test_finished_summary_opens_from_a_read_only_directory(make_summary):
    directory = make_summary()
    assert sorted(p.name for p in directory.iterdir()) == ["xaiboard.db"], "close() leaves no -wal/-shm behind"
    database = directory / "xaiboard.db"
    before = (database.stat().st_mtime_ns, database.read_bytes())
    database.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    directory.chmod(0o555)
    try:
        with Summary.open(directory) as summary:
            assert summary.run().status == "complete"
            assert summary.samples(sort="-prob").total == 12
            assert summary.saliency_map(0, 0, "Gradient") is not None
            assert sorted(p.name for p in directory.iterdir()) == ["xaiboard.db"]
        assert (database.stat().st_mtime_ns, database.read_bytes()) == before
    finally:
        directory.chmod(0o755)
        database.chmod(0o644)


def test_killed_run_on_a_read_only_copy_still_opens(tmp_path):
    """A killed run's files copied without the -shm index (it is rebuilt from the -wal) open read-only."""
    directory = tmp_path / "killed"
    kill_writer_midway(directory, batches_before_kill=2)
    (directory / "xaiboard.db-shm").unlink()
    directory.chmod(0o555)
    try:
        with Summary.open(directory) as summary:
            assert summary.run().status == "running"
            assert summary.num_samples() >= 2 * BATCH
    finally:
        directory.chmod(0o755)


def test_writer_context_marks_failures(tmp_path):
    directory = tmp_path / "failed"
    try:
        with start_summary(directory, 4):
            raise RuntimeError("out of memory")
    except RuntimeError:
        pass
    with Summary.open(directory) as summary:
        run = summary.run()
        assert (run.status, run.error) == ("failed", "RuntimeError: out of memory")
    assert os.listdir(directory) == ["xaiboard.db"]
