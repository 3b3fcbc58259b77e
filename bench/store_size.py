"""Bytes per sample by table, and milliseconds per map, of the store at ImageNet scale, before and after schema 0003.

A synthetic 224 x 224 photo with 1,000 classes and 1 or 2 explained labels, each with six maps shaped like real
ones: RISE (smooth), Occlusion (blocky), Gradient and SmoothGrad (pixel noise, non-negative), IntegratedGradients
(signed noise) and Grad-CAM (a 7 x 7 grid). "before" is the layout of schema 0002 written as that xaiboard wrote
it (a row per label, unfiltered 16-bit PNG maps at input resolution, a PNG image and its thumbnail); "after" is
what ``SummaryWriter`` writes now. Both are measured side by side in this run with SQLite's ``dbstat`` (pages of
each table and its indexes, after VACUUM) over ``--samples`` samples.

    python bench/store_size.py [--samples 20] [--uncertainty] [--photo]

``--photo`` uses scikit-image's cat photo (the ``photos`` extra) instead of the synthetic one.
"""

from __future__ import annotations

import argparse
import io
import sqlite3
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import photo  # noqa: E402
from xaiboard.store import (  # noqa: E402
    Batch,
    PredictionRecord,
    ProbabilityRecord,
    SaliencyRecord,
    SampleRecord,
    ScoreRecord,
    SummaryWriter,
    arrays,
    codec,
)
from xaiboard.store.database import alembic_config, writable_engine  # noqa: E402

SIZE, LABELS = 224, 1000
EXPLAINERS = ("GradCAM", "Gradient", "IntegratedGradients", "SmoothGrad", "Occlusion", "RISE")
METRICS = ("InsertionAUC", "DeletionAUC")
TABLES = ("samples", "predictions", "probabilities", "saliency", "scores")


# -- synthetic data ----------------------------------------------------------------------------------------------


def base_maps(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One map per explainer with the statistics of real ones (EfficientNet-Lite0 on photos)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    envelope = np.exp(-((yy - 100) ** 2 + (xx - 120) ** 2) / (2 * 45.0**2))
    texture = arrays.upsample(rng.normal(size=(56, 56)), (SIZE, SIZE))
    edges = np.abs(np.gradient(texture)[0]) + np.abs(np.gradient(texture)[1])
    weight = (0.2 + envelope + 0.5 * edges / edges.max())[..., None]
    rise = np.zeros((SIZE, SIZE))
    for _ in range(400):  # RISE: random 7 x 7 masks upsampled with a random shift, weighted by the score
        mask = arrays.upsample((rng.random((8, 8)) < 0.5).astype(np.float64), (256, 256))
        dy, dx = rng.integers(0, 32, 2)
        mask = mask[dy:dy + SIZE, dx:dx + SIZE]
        rise += ((mask * envelope).sum() / envelope.sum() + rng.normal(0, 0.02)) * mask
    grid = arrays.upsample(rng.normal(size=(5, 5)), (27, 27)) + 0.3 * rng.normal(size=(27, 27))
    total, count = np.zeros((SIZE, SIZE)), np.zeros((SIZE, SIZE))
    for i in range(27):  # Occlusion: 16 px windows every 8 px
        for j in range(27):
            total[i * 8:i * 8 + 16, j * 8:j * 8 + 16] += grid[i, j]
            count[i * 8:i * 8 + 16, j * 8:j * 8 + 16] += 1
    smooth_grad = np.mean([np.abs(rng.laplace(size=(SIZE, SIZE, 3)) * weight + 0.5 * envelope[..., None]).max(2)
                           for _ in range(8)], axis=0)
    return {
        "GradCAM": np.maximum(arrays.upsample(rng.normal(size=(3, 3)), (7, 7)) + 2 * envelope[::32, ::32], 0),
        "Gradient": np.abs(rng.laplace(size=(SIZE, SIZE, 3)) * weight).max(2) * 1e-3,
        "IntegratedGradients": ((rng.laplace(size=(SIZE, SIZE, 3)) * weight * texture[..., None]).sum(2)
                                + 0.5 * envelope) * 1e-2,
        "SmoothGrad": smooth_grad * 1e-3,
        "Occlusion": total / count,
        "RISE": rise / 400 / 0.5,
    }


def sample_maps(maps: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Distinct maps for another sample, statistically the same: rolled, flipped and rescaled."""
    out = {}
    for name, values in maps.items():
        shift = rng.integers(0, values.shape[0], 2)
        moved = np.roll(values, tuple(int(s) for s in shift), axis=(0, 1))
        out[name] = (moved[:, ::-1] if rng.random() < 0.5 else moved) * rng.uniform(0.5, 2.0)
    return out


def display_image(use_photo: bool) -> np.ndarray:
    if use_photo:
        from skimage import data  # the photos extra

        cat = data.chelsea()
        top, left = (cat.shape[0] - SIZE) // 2, (cat.shape[1] - SIZE) // 2
        return np.ascontiguousarray(cat[top:top + SIZE, left:left + SIZE])
    return photo(SIZE)


# -- the two layouts ---------------------------------------------------------------------------------------------


def old_gray16_png(levels: np.ndarray) -> bytes:
    """The map PNG schema 0002 wrote: no row filters, zlib level 1."""
    height, width = levels.shape
    rows = np.zeros((height, 1 + 2 * width), dtype=np.uint8)
    rows[:, 1:] = np.ascontiguousarray(levels, dtype=">u2").view(np.uint8).reshape(height, 2 * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
            + chunk(b"IEND", b""))


def old_png(image: np.ndarray, thumbnail: bool = False) -> bytes:
    picture = Image.fromarray(image)
    if thumbnail:
        picture.thumbnail((128, 128), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def make_samples(n: int, labels: int, uncertainty: bool, use_photo: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    maps, image = base_maps(rng), display_image(use_photo)
    samples = []
    for sample_id in range(n):
        probs = rng.dirichlet(np.full(LABELS, 0.05)).astype(np.float32)
        explained = [int(i) for i in np.argsort(-probs)[:labels]]
        sd = rng.uniform(0, 0.1, LABELS).astype(np.float32) if uncertainty else None
        samples.append({"id": sample_id, "image": np.roll(image, sample_id * 7, axis=1), "probs": probs, "sd": sd,
                        "explained": explained,
                        "maps": {label: sample_maps(maps, rng) for label in explained}})
    return samples


def write_before(directory: Path, samples: list[dict]) -> None:
    directory.mkdir()
    engine = writable_engine(directory / "xaiboard.db", foreign_keys=False)
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        from alembic import command

        command.upgrade(config, "0002")
    engine.dispose()
    connection = sqlite3.connect(directory / "xaiboard.db")
    with connection:
        connection.executemany('INSERT INTO labels ("index", name) VALUES (?, ?)',
                               [(i, f"class {i}") for i in range(LABELS)])
        connection.executemany("INSERT INTO explainers (id, name, config) VALUES (?, ?, '{}')",
                               list(enumerate(EXPLAINERS, 1)))
        connection.executemany("INSERT INTO metrics (id, name, higher_is_better, aggregation, config) "
                               "VALUES (?, ?, 1, 'mean', '{}')", list(enumerate(METRICS, 1)))
        for s in samples:
            sd = s["sd"]
            connection.execute("INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               (s["id"], f"n{s['id']:08d}.JPEG", old_png(s["image"]),
                                old_png(s["image"], thumbnail=True), SIZE, SIZE, float(s["probs"].max()),
                                None if sd is None else float(sd.max())))
            connection.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
                (s["id"], label, float(s["probs"][label]), int(label == s["explained"][0]),
                 ("TP" if label == s["explained"][0] else "FP") if label in s["explained"] else None,
                 None if sd is None else float(sd[label]),
                 None if sd is None else float(s["probs"][label] - sd[label]),
                 None if sd is None else float(s["probs"][label] + sd[label]))
                for label in range(LABELS)])
            for label, maps in s["maps"].items():
                for e, name in enumerate(EXPLAINERS, 1):
                    values = arrays.upsample(maps[name], (SIZE, SIZE))  # 0002 stored every map at input size
                    levels, vmin, vmax = arrays.quantise(values)
                    connection.execute("INSERT INTO saliency VALUES (?, ?, ?, ?, ?, ?, 0.1, NULL)",
                                       (s["id"], label, e, old_gray16_png(levels), vmin, vmax))
                    connection.executemany("INSERT INTO scores VALUES (?, ?, ?, ?, 0.5)",
                                           [(e, m, s["id"], label) for m in range(1, len(METRICS) + 1)])
    connection.close()


def write_after(directory: Path, samples: list[dict], map_bits: int) -> None:
    writer = SummaryWriter.create(directory, map_bits=map_bits)
    writer.set_labels([f"class {i}" for i in range(LABELS)])
    for name in EXPLAINERS:
        writer.register_explainer(name)
    for metric in METRICS:
        writer.register_metric(metric, True, (0.0, 1.0))
    batch = Batch()
    for s in samples:
        sd = s["sd"]
        lower, upper = (None, None) if sd is None else (s["probs"] - sd, s["probs"] + sd)
        batch.samples.append(SampleRecord(s["id"], f"n{s['id']:08d}.JPEG", s["image"], [s["explained"][0]]))
        batch.probabilities.append(ProbabilityRecord(s["id"], s["probs"], sd, lower, upper))
        for label, maps in s["maps"].items():
            spread = (None, None, None) if sd is None else (float(sd[label]), float(lower[label]),
                                                           float(upper[label]))
            batch.predictions.append(PredictionRecord(s["id"], label, float(s["probs"][label]),
                                                      label == s["explained"][0],
                                                      "TP" if label == s["explained"][0] else "FP", *spread))
            for name in EXPLAINERS:
                batch.saliency.append(SaliencyRecord(s["id"], label, name, maps[name], seconds=0.1))
                batch.scores += [ScoreRecord(name, metric, s["id"], label, 0.5, seconds=0.01) for metric in METRICS]
    writer.write_batch(batch)
    writer.close("complete")


def bytes_by_table(directory: Path) -> dict[str, int]:
    connection = sqlite3.connect(directory / "xaiboard.db")
    try:
        connection.execute("VACUUM")
        rows = connection.execute(
            "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat d JOIN sqlite_master m ON m.name = d.name "
            "GROUP BY m.tbl_name").fetchall()
    finally:
        connection.close()
    sizes = dict(rows)
    result = {table: sizes.pop(table, 0) for table in TABLES}
    result["other"] = sum(sizes.values())
    return result


# -- report ------------------------------------------------------------------------------------------------------


def median_ms(action, repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def float16_blob(values: np.ndarray) -> bytes:
    """The alternative considered: float16 (scaled by max |v|), byte-shuffled, zlib."""
    half = (values / max(float(np.abs(values).max()), 1e-30)).astype("<f2").view(np.uint8).reshape(-1, 2)
    return zlib.compress(np.ascontiguousarray(half.T).tobytes(), 6)


def report_maps(maps: dict[str, np.ndarray]) -> None:
    print(f"\nper map (bytes; ms median; 'error' in units of (max - min) / 65535):")
    print(f"{'explainer':>20} {'shape':>9} {'0002 PNG':>9} {'PNG filt':>9} {'q16':>8} {'stored':>8} "
          f"{'q12':>8} {'float16':>8} {'f16 error':>9} {'enc ms':>7} {'dec ms':>7} {'0002 enc':>8}")
    for name, values in maps.items():
        levels, vmin, vmax = arrays.quantise(values)
        before = old_gray16_png(arrays.quantise(arrays.upsample(values, (SIZE, SIZE)))[0])
        encoded = arrays.encode_map(values)
        half = float16_blob(values)
        scale = float(np.abs(values).max())
        f16 = (values / scale).astype(np.float16).astype(np.float64) * scale
        f16_error = np.abs(f16 - values).max() / ((vmax - vmin) / 65535)
        enc = median_ms(lambda: arrays.encode_map(values))
        dec = median_ms(lambda: arrays.decode_map(encoded.data, encoded.encoding, encoded.vmin, encoded.vmax,
                                                  encoded.height, encoded.width))
        old = median_ms(lambda: old_gray16_png(arrays.quantise(values)[0]))
        print(f"{name:>20} {'x'.join(map(str, values.shape)):>9} {len(before):>9} "
              f"{len(arrays.encode_levels_png(levels)):>9} {len(arrays.encode_levels_q(levels)):>8} "
              f"{len(encoded.data):>8} {len(arrays.encode_map(values, 12).data):>8} {len(half):>8} "
              f"{f16_error:>9.1f} {enc:>7.2f} {dec:>7.2f} {old:>8.2f}")
    cam = maps["GradCAM"]
    print(f"upsampling a 7x7 map to 224x224: {median_ms(lambda: arrays.upsample(cam, (SIZE, SIZE))):.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--uncertainty", action="store_true", help="also store sd and the 95%% interval")
    parser.add_argument("--photo", action="store_true", help="use scikit-image's cat photo as the image")
    args = parser.parse_args()
    for labels in (1, 2):
        samples = make_samples(args.samples, labels, args.uncertainty, args.photo)
        with tempfile.TemporaryDirectory() as base:
            write_before(Path(base) / "before", samples)
            sizes = {"before": bytes_by_table(Path(base) / "before")}
            for bits in (16, 12):
                start = time.perf_counter()
                write_after(Path(base) / f"after{bits}", samples, bits)
                sizes[f"after{bits}"] = bytes_by_table(Path(base) / f"after{bits}")
                if bits == 16:
                    write_s = (time.perf_counter() - start) / args.samples
        print(f"\n{labels} explained label(s) x {len(EXPLAINERS)} maps, {LABELS} classes, {SIZE}x{SIZE}, "
              f"{'with' if args.uncertainty else 'no'} uncertainty; bytes per sample over {args.samples} samples "
              f"(writing took {write_s * 1000:.0f} ms per sample):")
        print(f"{'table':>14} {'before 0002':>12} {'after':>10} {'ratio':>7} {'after 12-bit':>13} {'ratio':>7}")
        for table in (*TABLES, "other", "total"):
            values = {key: (sum(s.values()) if table == "total" else s[table]) / args.samples
                      for key, s in sizes.items()}
            ratio = values["before"] / values["after16"] if values["after16"] else float("inf")
            ratio12 = values["before"] / values["after12"] if values["after12"] else float("inf")
            print(f"{table:>14} {values['before']:>12,.0f} {values['after16']:>10,.0f} {ratio:>6.1f}x "
                  f"{values['after12']:>13,.0f} {ratio12:>6.1f}x")
    image = samples[0]["image"]
    stored = codec.encode_display_image(image)
    print(f"\ndisplay image: PNG {len(old_png(image)):,} B + thumbnail {len(old_png(image, True)):,} B before; "
          f"{codec.image_format(stored)} {len(stored):,} B after ({codec.psnr(image, stored):.1f} dB PSNR), "
          f"{median_ms(lambda: codec.encode_display_image(image), 5):.1f} ms to encode")
    report_maps(samples[0]["maps"][samples[0]["explained"][0]])


if __name__ == "__main__":
    main()
