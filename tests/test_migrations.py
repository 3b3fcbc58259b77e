"""The schema is owned by the models and versioned by Alembic: both agree, old summaries upgrade, newer ones refuse."""

from __future__ import annotations

import hashlib
import io
import sqlite3

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from PIL import Image
from sqlalchemy import text

from conftest import photo
from xaiboard.server.cli import main
from xaiboard.store import (
    Batch,
    NewerSummaryError,
    OutdatedSummaryError,
    PredictionRecord,
    ProbabilityRecord,
    SaliencyRecord,
    SampleRecord,
    Summary,
    SummaryWriter,
    arrays,
    head_revision,
)
from xaiboard.store.database import alembic_config, writable_engine
from xaiboard.store.models import Base

HEAD = "0005"


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def migrate(directory, revision: str, down: bool = True) -> None:
    engine = writable_engine(directory / "xaiboard.db", foreign_keys=False)
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)
    engine.dispose()


def table_rows(directory, sql: str) -> list[tuple]:
    connection = sqlite3.connect(directory / "xaiboard.db")
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def columns(directory, table: str) -> list[str]:
    return [row[1] for row in table_rows(directory, f"PRAGMA table_info({table})")]


def test_models_and_migrations_agree(make_summary):
    engine = writable_engine(make_summary() / "xaiboard.db")
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_new_summary_is_at_head(make_summary):
    directory = make_summary()
    with Summary.open(directory) as summary:
        assert summary.revision == head_revision() == HEAD
    # large blobs come last, so reading the other columns never pages through them
    assert columns(directory, "samples")[-1] == "image" and columns(directory, "saliency")[-1] == "data"


def test_old_revision_is_refused_then_upgraded_with_a_backup(make_summary):
    directory = make_summary()
    with Summary.open(directory) as summary:
        counts = summary.counts()
        predictions = summary.predictions()
    migrate(directory, "0001")
    database = directory / "xaiboard.db"
    before = digest(database)

    with pytest.raises(OutdatedSummaryError, match=f"run `xaiboard upgrade {directory}`"):
        Summary.open(directory)
    result = CliRunner().invoke(main, ["info", str(directory)])
    assert result.exit_code == 1
    assert "xaiboard upgrade" in result.output and "Traceback" not in result.output
    assert digest(database) == before, "opening never writes"
    assert sorted(p.name for p in directory.iterdir()) == ["xaiboard.db"]

    result = CliRunner().invoke(main, ["upgrade", str(directory)])
    assert result.exit_code == 0, result.output
    assert f"from schema 0001 to {HEAD}" in result.output
    (backup,) = directory.glob("xaiboard.db.0001.*.bak")
    assert digest(backup) == before

    with Summary.open(directory) as summary:
        assert summary.revision == HEAD
        assert summary.counts() == counts, "the upgrade keeps every row"
        assert [(p.label_index, p.type, p.ground_truth) for p in summary.predictions()] == [
            (p.label_index, p.type, p.ground_truth) for p in predictions]
        assert [p.prob for p in summary.predictions()] == pytest.approx([p.prob for p in predictions], rel=1e-6)
        top = max(summary.predictions(0), key=lambda p: p.prob)
        assert summary.samples(sort="-prob", limit=100).total == 12
        with summary.engine.connect() as connection:
            max_prob = connection.execute(text("SELECT max_prob FROM samples WHERE id = 0")).scalar_one()
        assert max_prob == pytest.approx(top.prob), "the upgrade fills the sort column for existing samples"

    result = CliRunner().invoke(main, ["upgrade", str(directory)])
    assert f"already at schema {HEAD}" in result.output


# -- 0002 -> 0003 on a summary written the way 0002 stored it ----------------------------------------------------

LABELS = 1000


def old_png(levels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_0002_summary(directory, n: int = 6) -> dict:
    """A summary at schema 0002 as that xaiboard wrote it: a row for every (sample, label), PNG maps at input
    resolution, thumbnails. Returns what was written."""
    directory.mkdir()
    migrate(directory, "0002", down=False)
    rng = np.random.default_rng(7)
    written: dict = {"rows": {}, "maps": {}, "images": {}}
    connection = sqlite3.connect(directory / "xaiboard.db")
    with connection:
        connection.execute("INSERT INTO run (id, name, status, progress_done, progress_total, created_at, updated_at, "
                           "task, activation, versions, config) VALUES (1, 'old', 'complete', ?, ?, "
                           "'2026-11-22 00:00:00', '2026-11-22 00:00:00', 'single-label', 'softmax', '{}', '{}')",
                           (n, n))
        connection.executemany("INSERT INTO labels (\"index\", name) VALUES (?, ?)",
                               [(i, f"class {i}") for i in range(LABELS)])
        connection.execute("INSERT INTO explainers (id, name, config) VALUES (1, 'Gradient', '{}')")
        connection.execute("INSERT INTO metrics (id, name, higher_is_better, aggregation, config) "
                           "VALUES (1, 'InsertionAUC', 1, 'mean', '{}')")
        for sample_id in range(n):
            probs = rng.dirichlet(np.ones(LABELS) * 0.1)
            truth, predicted = sample_id * 7 % LABELS, int(probs.argmax())
            uncertain = sample_id % 2 == 0
            image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            written["images"][sample_id] = image
            buffer = io.BytesIO()
            Image.fromarray(image).resize((8, 8)).save(buffer, format="PNG")
            connection.execute("INSERT INTO samples (id, name, image_png, thumbnail_png, width, height, max_prob, "
                               "max_sd) VALUES (?, ?, ?, ?, 32, 32, ?, ?)",
                               (sample_id, f"s{sample_id}", old_png(image), buffer.getvalue(), float(probs.max()),
                                0.2 if uncertain else None))
            connection.execute("INSERT INTO ground_truth VALUES (?, ?)", (sample_id, truth))
            rows = []
            for label in range(LABELS):
                kind = {(True, True): "TP", (True, False): "FN", (False, True): "FP"}.get(
                    (label == truth, label == predicted))
                sd = float(rng.uniform(0, 0.2)) if uncertain else None
                row = (sample_id, label, float(probs[label]), int(label == truth), kind, sd,
                       None if sd is None else float(probs[label]) - sd, None if sd is None else float(probs[label]) + sd)
                rows.append(row)
                written["rows"][(sample_id, label)] = row
                if kind is not None:
                    levels = rng.integers(0, 65536, (32, 32), dtype=np.uint16)
                    written["maps"][(sample_id, label)] = levels
                    connection.execute("INSERT INTO saliency VALUES (?, ?, 1, ?, -1.0, 2.0, 0.5, NULL)",
                                       (sample_id, label, old_png(levels)))
                    connection.execute("INSERT INTO scores VALUES (1, 1, ?, ?, 0.25)", (sample_id, label))
            connection.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    connection.close()
    return written


def test_upgrade_from_0002_keeps_every_prediction_and_map(tmp_path):
    directory = tmp_path / "old"
    written = write_0002_summary(directory)
    database = directory / "xaiboard.db"
    before, size_before = digest(database), database.stat().st_size
    explained = {key: row for key, row in written["rows"].items() if row[4] is not None}

    result = CliRunner().invoke(main, ["upgrade", str(directory)])
    assert result.exit_code == 0, result.output
    assert f"from schema 0002 to {HEAD}" in result.output
    (backup,) = directory.glob("xaiboard.db.0002.*.bak")
    assert digest(backup) == before, "the backup is the file as it was"

    with Summary.open(directory) as summary:
        counts = summary.counts()
        assert counts["num_samples"] == 6 and counts["num_predictions"] == 6 * LABELS, "every label's probability"
        assert counts["num_saliency_maps"] == counts["num_scores"] == len(explained)
        for sample_id in range(6):
            views = summary.predictions(sample_id)
            assert [v.label_index for v in views] == list(range(LABELS))
            for view in views:
                row = written["rows"][(sample_id, view.label_index)]
                if row[4] is not None:  # explained: exactly as stored
                    assert (view.prob, view.ground_truth, view.type, view.sd, view.lower, view.upper) == (
                        row[2], bool(row[3]), row[4], row[5], row[6], row[7])
                else:  # the others from the float32 vectors
                    assert view.type is None and not view.ground_truth
                    assert view.prob == pytest.approx(row[2], rel=1e-6, abs=1e-12)
                    assert (view.sd is None) == (row[5] is None)
                    if row[5] is not None:
                        assert (view.sd, view.lower, view.upper) == pytest.approx(row[5:], rel=1e-6, abs=1e-12)
            assert np.array_equal(summary.image(sample_id), written["images"][sample_id])
        for (sample_id, label), levels in written["maps"].items():
            record = summary.saliency_record(sample_id, label, "Gradient")
            assert (record.encoding, record.height, record.width) == ("png16", 32, 32)
            expected = (-1.0 + levels / 65535 * 3.0).astype(np.float32)
            assert np.array_equal(summary.saliency_map(sample_id, label, "Gradient"), expected)
        assert [row[4] for row in summary.scores()] == [0.25] * len(explained)
        assert summary.score_timings()[("Gradient", "InsertionAUC")]["count"] == 0
        by_prob = [s.id for s in summary.samples(sort="-prob", limit=10).samples]
        assert by_prob == sorted(range(6), key=lambda s: -max(written["rows"][(s, k)][2] for k in range(LABELS)))
    assert table_rows(directory, "SELECT COUNT(*) FROM predictions") == [(len(explained),)], \
        "only explained rows are left"
    assert "thumbnail_png" not in columns(directory, "samples")
    assert "seconds" in columns(directory, "scores")
    assert database.stat().st_size < size_before / 2, "the upgrade compacts the file"


def test_downgrade_to_0002_and_back_keeps_the_answers(tmp_path):
    directory = tmp_path / "new"
    writer = SummaryWriter.create(directory)
    writer.set_labels([f"c{i}" for i in range(20)])
    writer.register_explainer("GradCAM")
    rng = np.random.default_rng(3)
    batch = Batch()
    for sample_id in range(3):
        probs = rng.dirichlet(np.ones(20))
        label = int(probs.argmax())
        batch.samples.append(SampleRecord(sample_id, f"p{sample_id}", photo(96, sample_id), [label]))
        batch.probabilities.append(ProbabilityRecord(sample_id, probs))
        batch.predictions.append(PredictionRecord(sample_id, label, float(probs[label]), True, "TP"))
        batch.saliency.append(SaliencyRecord(sample_id, label, "GradCAM", rng.random((6, 6))))
    writer.write_batch(batch)
    writer.close("complete")
    with Summary.open(directory) as summary:
        predictions = summary.predictions()
        maps = [summary.saliency_map(s, p.label_index, "GradCAM") for s, p in enumerate(batch.predictions)]
        images = [summary.image(s) for s in range(3)]
    assert table_rows(directory, "SELECT substr(image, 1, 4) FROM samples")[0][0] != b"\x89PNG"

    migrate(directory, "0002")
    assert table_rows(directory, "SELECT COUNT(*) FROM predictions") == [(3 * 20,)], "0002 has a row per label"
    for (data,) in table_rows(directory, "SELECT map_png FROM saliency"):
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and arrays.png_shape(data) == (6, 6)
    for (data,) in table_rows(directory, "SELECT image_png FROM samples"):
        assert data[:4] == b"\x89PNG", "0002 serves images as PNG"

    migrate(directory, HEAD, down=False)
    with Summary.open(directory) as summary:
        assert [(p.label_index, p.type) for p in summary.predictions()] == [(p.label_index, p.type) for p in predictions]
        assert [p.prob for p in summary.predictions()] == pytest.approx([p.prob for p in predictions], rel=1e-6)
        for s, p in enumerate(batch.predictions):
            assert np.abs(summary.saliency_map(s, p.label_index, "GradCAM") - maps[s]).max() <= 1 / 65535
            assert np.array_equal(summary.image(s), images[s])


def test_newer_revision_fails_with_a_clear_message(make_summary):
    directory = make_summary()
    engine = writable_engine(directory / "xaiboard.db")
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dcafe'"))
    engine.dispose()
    with pytest.raises(NewerSummaryError, match="newer xaiboard"):
        Summary.open(directory)
    for command_line in (["info", str(directory)], ["upgrade", str(directory)]):
        result = CliRunner().invoke(main, command_line)
        assert result.exit_code == 1
        assert "newer xaiboard" in result.output and "Traceback" not in result.output
