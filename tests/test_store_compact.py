"""The compact store: every label's probability answered from one vector per sample, maps at their own resolution
in the smaller of two lossless encodings of their levels, photos as WebP/JPEG, benchmark time per score."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from conftest import photo
from xaiboard.store import (
    Batch,
    PredictionRecord,
    ProbabilityRecord,
    SaliencyRecord,
    SampleRecord,
    ScoreRecord,
    Summary,
    SummaryWriter,
    arrays,
    codec,
)

LABELS = 1000


def new_writer(directory, labels: int = LABELS, **options) -> SummaryWriter:
    writer = SummaryWriter.create(directory, **options)
    writer.set_labels([f"class {i}" for i in range(labels)])
    writer.register_explainer("GradCAM")
    writer.register_explainer("RISE")
    writer.register_metric("InsertionAUC", True, (0.0, 1.0))
    return writer


def imagenet_batch(ids: range, uncertainty: bool = True, seed: int = 0) -> Batch:
    """Samples as the runner hands them over at ImageNet scale: a 1,000-label vector and 1-2 explained labels."""
    rng = np.random.default_rng(seed)
    batch = Batch()
    for sample_id in ids:
        probs = rng.dirichlet(np.full(LABELS, 0.05)).astype(np.float32)
        predicted = int(probs.argmax())
        truth = predicted if sample_id % 2 == 0 else (predicted + 1) % LABELS
        sd = rng.uniform(0, 0.1, LABELS).astype(np.float32) if uncertainty else None
        lower = None if sd is None else np.clip(probs - 2 * sd, 0, 1)
        upper = None if sd is None else np.clip(probs + 2 * sd, 0, 1)
        batch.samples.append(SampleRecord(sample_id, f"n{sample_id:05d}.JPEG", photo(64, sample_id), [truth]))
        batch.probabilities.append(ProbabilityRecord(sample_id, probs, sd, lower, upper))
        for label in sorted({truth, predicted}):
            kind = "TP" if label == truth == predicted else ("FN" if label == truth else "FP")
            spread = (None, None, None) if sd is None else (float(sd[label]), float(lower[label]), float(upper[label]))
            batch.predictions.append(PredictionRecord(sample_id, label, float(probs[label]), label == truth, kind,
                                                      *spread))
            batch.saliency.append(SaliencyRecord(sample_id, label, "GradCAM", rng.random((7, 7))))
            batch.scores.append(ScoreRecord("GradCAM", "InsertionAUC", sample_id, label, float(rng.random()),
                                            seconds=0.01 * (1 + sample_id % 3)))
    return batch


def table_bytes(directory, *tables: str) -> int:
    """Bytes of the pages the tables and their indexes take (SQLite's dbstat)."""
    connection = sqlite3.connect(directory / "xaiboard.db")
    try:
        marks = ",".join("?" * len(tables))
        return connection.execute(
            f"SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN (SELECT name FROM sqlite_master "
            f"WHERE tbl_name IN ({marks}))", tables).fetchone()[0]
    finally:
        connection.close()


@pytest.fixture
def imagenet(tmp_path):
    directory = tmp_path / "imagenet"
    writer = new_writer(directory)
    batch = imagenet_batch(range(10))
    writer.write_batch(batch)
    writer.close("complete")
    return directory, batch


# -- predictions -------------------------------------------------------------------------------------------------


def test_every_label_probability_is_answered_after_compaction(imagenet):
    directory, batch = imagenet
    explained = {(p.sample_id, p.label_index): p for p in batch.predictions}
    with Summary.open(directory) as summary:
        assert summary.counts()["num_predictions"] == 10 * LABELS
        for record in batch.probabilities:
            views = summary.predictions(record.sample_id)
            assert [v.label_index for v in views] == list(range(LABELS))
            assert [v.prob for v in views] == pytest.approx(record.probs.tolist(), rel=1e-7)
            assert [v.sd for v in views] == pytest.approx(record.sd.tolist(), rel=1e-7)
            assert [v.upper for v in views] == pytest.approx(record.upper.tolist(), rel=1e-7)
            for view in views:
                row = explained.get((record.sample_id, view.label_index))
                assert view.type == (row.type if row else None)
                assert view.ground_truth == (row.ground_truth if row else False)
            sample = summary.sample(record.sample_id)
            assert len(sample.labels) == LABELS and sample.labels[0].prob == pytest.approx(record.probs.max())
            assert [label.prob for label in sample.labels] == sorted((label.prob for label in sample.labels),
                                                                     reverse=True)
            assert {(label.label_index, label.explainers) for label in sample.labels if label.type} == {
                (k[1], ("GradCAM",)) for k in explained if k[0] == record.sample_id}
            vectors = summary.probabilities(record.sample_id)
            assert vectors.probs.dtype == np.float32 and np.array_equal(vectors.probs, record.probs)
            assert np.array_equal(vectors.lower, record.lower)
        assert summary.probabilities(99) is None
        assert {(p.sample_id, p.label_index) for p in summary.predictions(explained_only=True)} == set(explained)
        assert len(summary.predictions()) == 10 * LABELS
        # filters, sorts and pages answer as before: from the explained labels and the samples' maxima
        page = summary.samples(sort="-prob", limit=100)
        top = {r.sample_id: float(r.probs.max()) for r in batch.probabilities}
        assert [s.id for s in page.samples] == sorted(top, key=lambda s: (-top[s], s))
        assert all(label.type for s in page.samples for label in s.labels)
        assert summary.samples(types=["FN"], limit=100).total == 5
        by_sd = [s.id for s in summary.samples(sort="-uncertainty", limit=100).samples]
        max_sd = {r.sample_id: float(r.sd.max()) for r in batch.probabilities}
        assert by_sd == sorted(max_sd, key=lambda s: (-max_sd[s], s))
    connection = sqlite3.connect(directory / "xaiboard.db")
    assert connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == len(explained)
    connection.close()


def test_prediction_records_alone_still_make_the_vector(tmp_path):
    """A writer given a record per label (no ProbabilityRecord) keeps rows only for the explained ones."""
    writer = new_writer(tmp_path / "rows", labels=5)
    batch = Batch(samples=[SampleRecord(0, "a", np.zeros((8, 8), np.uint8), [2])])
    probs = [0.1, 0.2, 0.4, 0.25, 0.05]
    for label, prob in enumerate(probs):
        batch.predictions.append(PredictionRecord(0, label, prob, label == 2, "TP" if label == 2 else None,
                                                  sd=0.01 * label))
    writer.write_batch(batch)
    writer.close("complete")
    with Summary.open(tmp_path / "rows") as summary:
        views = summary.predictions(0)
        assert [v.prob for v in views] == pytest.approx(probs)
        assert [v.sd for v in views] == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04])
        assert [v.type for v in views] == [None, None, "TP", None, None]
        assert [v.lower for v in views] == [None] * 5
        assert summary.counts()["num_predictions"] == 5
        assert len(summary.predictions(explained_only=True)) == 1


@pytest.mark.parametrize("record, message", [
    (ProbabilityRecord(0, np.zeros((2, 5))), "1-D vector"),
    (ProbabilityRecord(0, np.zeros(5), sd=np.zeros(4)), "sd has 4 values"),
])
def test_bad_probability_records_are_refused(tmp_path, record, message):
    writer = new_writer(tmp_path / "bad", labels=5)
    with pytest.raises(ValueError, match=message):
        writer.write_batch(Batch(probabilities=[record]))
    with pytest.raises(ValueError, match="two probability records"):
        writer.write_batch(Batch(probabilities=[ProbabilityRecord(0, np.zeros(5))] * 2))
    writer.close("failed")


def test_prediction_bytes_shrink(tmp_path):
    """Against the same samples with a row per label (the layout before schema 0003), measured side by side."""
    compact, rows = tmp_path / "compact", tmp_path / "rows"
    batch = imagenet_batch(range(20))
    for directory in (compact, rows):
        writer = new_writer(directory)
        writer.write_batch(batch)
        writer.close("complete")
    connection = sqlite3.connect(rows / "xaiboard.db")
    with connection:
        explained = {(p.sample_id, p.label_index) for p in batch.predictions}
        connection.executemany(
            "INSERT INTO predictions VALUES (?, ?, ?, 0, NULL, ?, ?, ?)",
            [(r.sample_id, label, float(r.probs[label]), float(r.sd[label]), float(r.lower[label]),
              float(r.upper[label])) for r in batch.probabilities for label in range(LABELS)
             if (r.sample_id, label) not in explained])
        connection.execute("DELETE FROM probabilities")
    connection.execute("VACUUM")
    connection.close()
    new = table_bytes(compact, "predictions", "probabilities") / 20
    old = table_bytes(rows, "predictions", "probabilities") / 20
    assert new < 20_000 and new < old / 5, (new, old)


# -- maps --------------------------------------------------------------------------------------------------------


def smooth_map(size: int = 224) -> np.ndarray:
    rng = np.random.default_rng(1)
    return arrays.upsample(rng.random((8, 8)), (size, size)).astype(np.float64) + 0.3


def noisy_map(size: int = 224) -> np.ndarray:
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:size, 0:size]
    envelope = np.exp(-((yy - size / 2) ** 2 + (xx - size / 3) ** 2) / (2 * (size / 5) ** 2))
    return np.abs(rng.laplace(size=(size, size))) * (0.2 + envelope)


MAPS = {
    "smooth": smooth_map(),
    "noisy": noisy_map(),
    "signed": noisy_map(64) - 1.0,
    "gradcam": np.random.default_rng(3).random((7, 7)),
    "row": np.linspace(-1, 1, 9)[None, :],
    "pixel": np.array([[3.5]]),
    "constant": np.full((5, 6), -2.0),
}


@pytest.mark.parametrize("name", MAPS)
@pytest.mark.parametrize("bits", [16, 12, 8])
def test_map_encodings_round_trip_within_their_bound(name, bits):
    values = MAPS[name]
    levels, vmin, vmax = arrays.quantise(values, bits)
    bound = (vmax - vmin) / (2**bits - 1) / 2 + 4e-7 * max(abs(vmin), abs(vmax))
    blobs = {f"q{bits}": arrays.encode_levels_q(levels), f"png{bits}": arrays.encode_levels_png(levels)}
    for encoding, data in blobs.items():
        assert np.array_equal(arrays.decode_levels(data, encoding, *values.shape), levels), encoding
        decoded = arrays.decode_map(data, encoding, vmin, vmax, *values.shape)
        assert decoded.dtype == np.float32 and decoded.shape == values.shape
        assert np.abs(decoded - values).max() <= bound, encoding
    encoded = arrays.encode_map(values, bits)
    assert len(encoded.data) == min(len(b) for b in blobs.values())
    assert (encoded.height, encoded.width) == values.shape and (encoded.vmin, encoded.vmax) == (vmin, vmax)


def test_encoder_picks_the_smaller_encoding(monkeypatch):
    values = MAPS["smooth"]
    levels, _, _ = arrays.quantise(values)
    png, q = arrays.encode_levels_png(levels), arrays.encode_levels_q(levels)
    assert len(q) < 0.6 * len(png), "smooth maps: the planar predictor beats PNG's row filters"
    assert arrays.encode_map(values, try_png=True).encoding == "q16"
    monkeypatch.setattr(arrays, "encode_levels_q", lambda levels: b"\x00" * (len(png) + 1))
    chosen = arrays.encode_map(values, try_png=True)
    assert chosen.encoding == "png16" and chosen.data == png
    assert arrays.encode_map(values, try_png=False).encoding == "q16"


def test_bad_maps_and_precisions_are_refused():
    for bad in (np.zeros(4), np.zeros((2, 2, 2)), np.array([[np.nan]]), np.zeros((0, 3))):
        with pytest.raises(ValueError):
            arrays.encode_map(bad)
    for bits in (1, 17, 12.5):
        with pytest.raises(ValueError, match="map bits"):
            arrays.encode_map(np.zeros((2, 2)), bits)
    with pytest.raises(ValueError, match="unknown map encoding"):
        arrays.decode_map(b"", "jpeg", 0.0, 1.0, 1, 1)


@pytest.mark.parametrize("shape, size", [((7, 7), (224, 224)), ((6, 6), (12, 12)), ((5, 9), (17, 31)),
                                         ((8, 8), (3, 5)), ((1, 1), (4, 4)), ((224, 224), (224, 224))])
def test_upsample_matches_torch_bilinear(shape, size):
    torch = pytest.importorskip("torch")
    values = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(values)[None, None], size=size, mode="bilinear",
                                               align_corners=False)[0, 0].numpy()
    assert np.abs(arrays.upsample(values, size) - expected).max() <= 2e-6


def test_maps_are_stored_at_their_own_resolution(imagenet):
    directory, batch = imagenet
    record = batch.saliency[0]
    with Summary.open(directory) as summary:
        native = summary.saliency_map(record.sample_id, record.label_index, "GradCAM")
        assert native.shape == (7, 7)
        assert np.abs(native - record.map).max() <= (record.map.max() - record.map.min()) / 65535 / 2 + 1e-7
        row = summary.saliency_record(record.sample_id, record.label_index, "GradCAM")
        assert (row.height, row.width, row.encoding) == (7, 7, "q16")
        full = summary.saliency_map(record.sample_id, record.label_index, "GradCAM", full_size=True)
        assert full.shape == (64, 64) and np.allclose(full, arrays.upsample(native, (64, 64)))
        assert summary.saliency_map(record.sample_id, 999, "GradCAM", full_size=True) is None


def test_map_precision_is_a_writer_option(tmp_path):
    values = noisy_map(64)
    sizes = {}
    for bits in (16, 12):
        writer = new_writer(tmp_path / f"b{bits}", labels=2, map_bits=bits)
        writer.write_batch(Batch(samples=[SampleRecord(0, "a", np.zeros((64, 64), np.uint8))],
                                 saliency=[SaliencyRecord(0, 0, "RISE", values)]))
        writer.close("complete")
        with Summary.open(tmp_path / f"b{bits}") as summary:
            row = summary.saliency_record(0, 0, "RISE")
            assert row.encoding == f"q{bits}"
            decoded = summary.saliency_map(0, 0, "RISE")
            assert np.abs(decoded - values).max() <= (values.max() - values.min()) / (2**bits - 1) / 2 + 1e-6
            sizes[bits] = len(row.data)
    assert sizes[12] < 0.8 * sizes[16]
    with pytest.raises(ValueError, match="map bits"):
        SummaryWriter.create(tmp_path / "b0", map_bits=0)


# -- display images ----------------------------------------------------------------------------------------------


def test_photos_are_stored_lossy_and_small_images_exact():
    picture = photo(224)
    stored = codec.encode_display_image(picture)
    assert codec.image_format(stored) in ("WEBP", "JPEG") and codec.image_mimetype(stored).startswith("image/")
    assert len(stored) < len(codec.encode_image(picture)) / 4
    assert codec.psnr(picture, stored) >= codec.LOSSY_MIN_PSNR
    assert codec.decode_image(stored).shape == (224, 224, 3)
    small = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert codec.image_format(codec.encode_display_image(small)) == "PNG"
    assert np.array_equal(codec.decode_image(codec.encode_display_image(small)), small)
    assert codec.image_format(codec.encode_display_image(picture, lossy=False)) == "PNG"
    drawing = np.full((128, 128, 3), 240, np.uint8)
    drawing[30:90, 40:100] = (200, 30, 30)  # flat colours: PNG is smaller and exact
    assert codec.image_format(codec.encode_display_image(drawing)) == "PNG"
    transparent = np.dstack([picture, np.full((224, 224), 128, np.uint8)])
    assert codec.image_format(codec.encode_display_image(transparent)) == "PNG"
    with pytest.raises(ValueError):
        codec.image_format(b"GIF89a")


def test_writer_stores_photos_lossy_unless_told(tmp_path, imagenet):
    directory, batch = imagenet
    with Summary.open(directory) as summary:
        data = summary.image_data(0)
        assert codec.image_format(data) in ("WEBP", "JPEG")
        assert codec.psnr(batch.samples[0].image, data) >= codec.LOSSY_MIN_PSNR
    writer = new_writer(tmp_path / "exact", labels=2, lossy_images=False)
    writer.write_batch(Batch(samples=[SampleRecord(0, "exact", batch.samples[0].image)]))
    writer.close("complete")
    with Summary.open(tmp_path / "exact") as summary:
        assert np.array_equal(summary.image(0), batch.samples[0].image)


# -- timings -----------------------------------------------------------------------------------------------------


def test_score_seconds_and_timings(imagenet):
    directory, batch = imagenet
    with Summary.open(directory) as summary:
        (key, timing), = summary.score_timings().items()
        seconds = [s.seconds for s in batch.scores]
        assert key == ("GradCAM", "InsertionAUC") and timing["count"] == len(seconds)
        assert timing["mean_seconds"] == pytest.approx(np.mean(seconds))
        assert timing["total_seconds"] == pytest.approx(sum(seconds))
