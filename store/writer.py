"""The writer of a summary directory: creates it, records the run, commits a batch of samples per transaction.

A sample's row is written in the same transaction as all of its predictions, maps and scores, so a run killed at
any moment leaves a summary whose samples are complete and which :meth:`SummaryWriter.resume` continues.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session

from . import arrays, rows
from .database import create_database, db_path, open_writable, set_journal_mode
from .errors import SummaryError
from .models import (
    RUN_STATUSES,
    Box,
    AttentionMap,
    Curve,
    Explainer,
    Failure,
    FeatureMap,
    GroundTruth,
    IntegratedGradientsPath,
    InternalLayer,
    Intervention,
    Label,
    Mask,
    Metric,
    Prediction,
    Probabilities,
    Run,
    Sample,
    Saliency,
    Score,
    utcnow,
)
from .records import Batch, FailureRecord, LayerRecord

RUN_ID = 1


class SummaryWriter:
    """Writes one summary directory. Use :meth:`create` for a new run and :meth:`resume` to continue one.

    ``map_bits`` is the precision maps are kept at: every value within ``(max - min) / (2**map_bits - 1) / 2``
    (16 by default; 12 is still finer than float16 at a map's peak and makes noisy gradient maps 25-35 % smaller).
    ``lossy_images=False`` keeps every display image an exact PNG instead of storing photos as WebP/JPEG.
    """

    def __init__(self, directory: Path, engine: Engine, *, map_bits: int = arrays.MAP_BITS,
                 lossy_images: bool = True) -> None:
        self.directory = directory
        self.engine = engine
        self.map_bits = arrays.check_bits(map_bits)
        self.lossy_images = lossy_images
        self._explainer_ids: dict[str, int] = {}
        self._metric_ids: dict[str, int] = {}
        self._layer_ids: dict[str, int] = {}
        self._num_labels = 0
        self._closed = False
        self._load_ids()

    # -- opening -------------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: str | Path, name: str | None = None, overwrite: bool = False, *,
               map_bits: int = arrays.MAP_BITS, lossy_images: bool = True) -> "SummaryWriter":
        """Create a new summary directory (its parents too) with status ``running``.

        An existing summary there is an error unless ``overwrite`` is set, which deletes its database first.
        """
        directory = Path(directory)
        path = db_path(directory)
        if path.exists():
            if not overwrite:
                raise SummaryError(f"{directory} already holds a summary; resume it or pass overwrite=True")
            cls.remove(directory)
        directory.mkdir(parents=True, exist_ok=True)
        engine = create_database(directory)
        with Session(engine) as session, session.begin():
            session.add(Run(id=RUN_ID, name=name or directory.resolve().name, status="running", config={}, versions={}))
        return cls(directory, engine, map_bits=map_bits, lossy_images=lossy_images)

    @classmethod
    def resume(cls, directory: str | Path, *, map_bits: int = arrays.MAP_BITS,
               lossy_images: bool = True) -> "SummaryWriter":
        """Open an existing summary to go on writing it; its status becomes ``running`` again."""
        directory = Path(directory)
        writer = cls(directory, open_writable(directory), map_bits=map_bits, lossy_images=lossy_images)
        writer.set_status("running")
        return writer

    @staticmethod
    def remove(directory: str | Path) -> None:
        """Delete a summary directory's database files (what ``overwrite`` does), leaving other files alone."""
        path = db_path(directory)
        for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)

    def _load_ids(self) -> None:
        with Session(self.engine) as session:
            self._explainer_ids = dict(session.execute(select(Explainer.name, Explainer.id)).all())
            self._metric_ids = dict(session.execute(select(Metric.name, Metric.id)).all())
            self._layer_ids = dict(session.execute(select(InternalLayer.name, InternalLayer.id)).all())
            self._num_labels = session.execute(select(func.count()).select_from(Label)).scalar_one()

    # -- run metadata --------------------------------------------------------------------------------------------

    def update_run(self, **fields: Any) -> None:
        """Set columns of the run row (``name``, ``task``, ``activation``, ``threshold``, ``top_k``, ``config``...)."""
        unknown = set(fields) - set(Run.__table__.columns.keys())
        if unknown:
            raise TypeError(f"unknown run fields: {', '.join(sorted(unknown))}")
        with Session(self.engine) as session, session.begin():
            session.execute(update(Run).where(Run.id == RUN_ID).values(updated_at=utcnow(), **fields))

    def run_info(self) -> dict[str, Any]:
        """The run row as a dict (to compare a resumed run's configuration with the stored one)."""
        with Session(self.engine) as session:
            run = session.get(Run, RUN_ID)
            assert run is not None
            return {column: getattr(run, column) for column in Run.__table__.columns.keys()}

    def set_status(self, status: str, error: str | None = None) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, got {status!r}")
        self.update_run(status=status, error=error)

    def set_progress(self, done: int | None = None, total: int | None = None) -> None:
        fields: dict[str, Any] = {}
        if done is not None:
            fields["progress_done"] = done
        if total is not None:
            fields["progress_total"] = total
        self.update_run(**fields)

    def set_labels(self, names: Sequence[str]) -> None:
        """Store the class names by output index; on a resumed run they must be the ones stored."""
        with Session(self.engine) as session, session.begin():
            stored = [name for (name,) in session.execute(select(Label.name).order_by(Label.index))]
            if stored and stored != list(names):
                raise SummaryError("the class names differ from those of the summary being resumed")
            if not stored:
                session.execute(insert(Label), [{"index": i, "name": str(n)} for i, n in enumerate(names)])
        self._num_labels = len(names)

    def register_explainer(self, name: str, config: dict[str, Any] | None = None) -> int:
        """Add an explainer (or return the id of the one with that name, keeping its stored configuration)."""
        if name not in self._explainer_ids:
            with Session(self.engine) as session, session.begin():
                row = Explainer(name=name, config=config or {})
                session.add(row)
                session.flush()
                self._explainer_ids[name] = row.id
        return self._explainer_ids[name]

    def register_metric(
        self,
        name: str,
        higher_is_better: bool,
        value_range: tuple[float | None, float | None] = (None, None),
        aggregation: str = "mean",
        config: dict[str, Any] | None = None,
    ) -> int:
        """Add a benchmark with its direction, range and aggregation (``mean``, or ``macro`` over classes)."""
        if aggregation not in ("mean", "macro"):
            raise ValueError(f"aggregation must be 'mean' or 'macro', got {aggregation!r}")
        if name not in self._metric_ids:
            with Session(self.engine) as session, session.begin():
                row = Metric(
                    name=name,
                    higher_is_better=higher_is_better,
                    range_min=value_range[0],
                    range_max=value_range[1],
                    aggregation=aggregation,
                    config=config or {},
                )
                session.add(row)
                session.flush()
                self._metric_ids[name] = row.id
        return self._metric_ids[name]

    def register_layers(self, layers: Sequence[LayerRecord]) -> None:
        """Add the layers looked inside of (with their filters); a layer already stored by name is kept as is."""
        new = [rows.layer_row(layer) for layer in layers if layer.name not in self._layer_ids]
        if new:
            with Session(self.engine) as session, session.begin():
                session.execute(insert(InternalLayer), new)
                self._layer_ids = dict(session.execute(select(InternalLayer.name, InternalLayer.id)).all())

    # -- samples -------------------------------------------------------------------------------------------------

    def done_sample_ids(self) -> set[int]:
        """The samples already written completely; a resumed run skips them."""
        with Session(self.engine) as session:
            return set(session.execute(select(Sample.id)).scalars())

    def write_batch(self, batch: Batch) -> int:
        """Write a batch of samples with all their rows in one transaction; returns the samples written so far."""
        prediction_rows, probability_rows, maxima = rows.prediction_rows(batch, self._num_labels)
        sample_rows, truth_rows, box_rows, mask_rows = rows.sample_rows(batch, maxima, self.lossy_images)
        saliency_rows = rows.saliency_rows(batch, self._explainer_id, self.map_bits)
        score_rows = rows.score_rows(batch, self._explainer_id, self._metric_id)
        path_rows = rows.path_rows(batch, self._explainer_id)
        curve_rows = rows.curve_rows(batch, self._explainer_id, self._metric_id)
        feature_rows = rows.feature_map_rows(batch, self._layer_id)
        attention_rows = rows.attention_rows(batch, self._layer_id)
        intervention_rows = rows.intervention_rows(batch, self._num_labels)
        with Session(self.engine) as session, session.begin():
            for model, values in (
                (Sample, sample_rows),
                (GroundTruth, truth_rows),
                (Box, box_rows),
                (Mask, mask_rows),
                (Prediction, prediction_rows),
                (Probabilities, probability_rows),
                (Saliency, saliency_rows),
                (Score, score_rows),
                (IntegratedGradientsPath, path_rows),
                (Curve, curve_rows),
                (FeatureMap, feature_rows),
                (AttentionMap, attention_rows),
                (Intervention, intervention_rows),
                (Failure, [self._failure_row(f) for f in batch.failures]),
            ):
                if values:
                    session.execute(insert(model), values)
            done = session.execute(select(func.count()).select_from(Sample)).scalar_one()
            session.execute(update(Run).where(Run.id == RUN_ID).values(progress_done=done, updated_at=utcnow()))
        return done

    def record_failures(self, failures: Iterable[FailureRecord]) -> None:
        """Record errors outside a batch (e.g. of the whole run)."""
        rows = [self._failure_row(f) for f in failures]
        if rows:
            with Session(self.engine) as session, session.begin():
                session.execute(insert(Failure), rows)

    @staticmethod
    def _failure_row(failure: FailureRecord) -> dict[str, Any]:
        return {"sample_id": failure.sample_id, "stage": failure.stage, "message": failure.message,
                "traceback": failure.traceback, "created_at": utcnow()}

    def _explainer_id(self, name: str) -> int:
        try:
            return self._explainer_ids[name]
        except KeyError:
            raise SummaryError(f"explainer {name!r} is not registered in this summary") from None

    def _layer_id(self, name: str) -> int:
        try:
            return self._layer_ids[name]
        except KeyError:
            raise SummaryError(f"layer {name!r} is not registered in this summary") from None

    def _metric_id(self, name: str) -> int:
        try:
            return self._metric_ids[name]
        except KeyError:
            raise SummaryError(f"metric {name!r} is not registered in this summary") from None

    # -- closing -------------------------------------------------------------------------------------------------

    def close(self, status: str | None = None, error: str | None = None) -> None:
        """Set the final status (if given) and leave WAL mode so the file opens from a read-only share."""
        if self._closed:
            return
        if status is not None:
            self.set_status(status, error)
        mode = set_journal_mode(self.engine, "delete")
        self.engine.dispose()
        self._closed = True
        if mode.lower() != "delete":
            warnings.warn(
                f"{self.directory} stays in WAL mode because another process holds it open; it is complete, but "
                "copy xaiboard.db-wal with it until any writer reopens and closes it",
                RuntimeWarning,
                stacklevel=2,
            )

    def __enter__(self) -> "SummaryWriter":
        return self

    def __exit__(self, exc_type, exc, _tb) -> None:
        if exc_type is None:
            self.close()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("interrupted")
        else:
            self.close("failed", f"{exc_type.__name__}: {exc}")


