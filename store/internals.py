"""What the network computed inside for each sample: the layers looked inside of, their filters, the feature maps,
the per-head attention over the patch grid and the prediction under an attention intervention. Summaries written
before schema 0005 have none of it and answer empty."""

from __future__ import annotations

from typing import Optional

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import arrays
from .models import AttentionMap, FeatureMap, InternalLayer, Intervention
from .rows import CODE_PACKING
from .views import FeatureMapView, FilterView, LayerView

INTERNALS_REVISION = "0005"


class InternalQueries:
    """Mixed into :class:`~xaiboard.store.Summary`: needs its sessions and its schema revision."""

    revision: str

    def _session(self) -> Session:
        raise NotImplementedError

    @property
    def has_internals(self) -> bool:
        """Whether the file's schema has the tables of what the network computed inside (schema 0005 on)."""
        return self.revision >= INTERNALS_REVISION

    def internal_counts(self, session: Session) -> dict[str, int]:
        """How many layers, feature-map rows, attention rows and intervened predictions the summary holds."""
        names = ("num_internal_layers", "num_feature_maps", "num_attention_maps", "num_interventions")
        if not self.has_internals:
            return dict.fromkeys(names, 0)
        models = (InternalLayer, FeatureMap, AttentionMap, Intervention)
        return {name: session.execute(select(func.count()).select_from(model)).scalar_one()
                for name, model in zip(names, models)}

    def internal_layers(self) -> list[LayerView]:
        """The layers looked inside of, feature layers then attention layers, each in the order the run named them."""
        if not self.has_internals:
            return []
        with self._session() as session:
            rows = session.scalars(select(InternalLayer).order_by(InternalLayer.id)).all()
            views = [LayerView(r.name, r.kind, r.channels, r.height, r.width, r.tokens, r.filter_mode) for r in rows]
        return sorted(views, key=lambda v: v.kind != "features")

    def _layer(self, session: Session, name: str) -> Optional[InternalLayer]:
        return session.scalars(select(InternalLayer).where(InternalLayer.name == name)).first()

    def filters(self, layer: str) -> Optional[FilterView]:
        """A Conv2d layer's filters in display form, or None (not stored, or not a convolution)."""
        if not self.has_internals:
            return None
        with self._session() as session:
            row = self._layer(session, layer)
            if row is None or row.filters is None or row.filter_shape is None:
                return None
            display = arrays.decode_packed(row.filters, "f16z", tuple(row.filter_shape)).astype(np.float32)
            return FilterView(row.name, row.filter_mode or "mean", display, float(row.filter_low or 0.0),
                              float(row.filter_high or 0.0))

    def feature_maps(self, sample_id: int, layer: str) -> Optional[FeatureMapView]:
        """One sample's stored feature maps of a layer, decoded to float32, or None."""
        if not self.has_internals:
            return None
        with self._session() as session:
            found = session.execute(
                select(FeatureMap, InternalLayer)
                .join(InternalLayer, InternalLayer.id == FeatureMap.layer_id)
                .where(FeatureMap.sample_id == sample_id, InternalLayer.name == layer)
            ).first()
            if found is None:
                return None
            row, layer_row = found
            vectors = [arrays.decode_vector(blob) for blob in (row.channel_index, row.low, row.high, row.means)]
            shape = (row.kept, layer_row.height, layer_row.width)
            codes = arrays.decode_packed(row.codes, CODE_PACKING[row.encoding], shape)
            total = layer_row.channels
        channels, low, high, means = vectors
        if row.encoding == "uint8":
            step = (high - low) / 255.0
            maps = low[:, None, None] + codes.astype(np.float32) * step[:, None, None]
        else:
            maps = codes.astype(np.float32)
        return FeatureMapView(layer, row.encoding, channels.astype(np.int64), low, high, means, maps, total)

    def attention_maps(self, sample_id: int) -> dict[str, np.ndarray]:
        """One sample's per-head attention (heads x rows x columns, float32) by layer name, in the run's order."""
        if not self.has_internals:
            return {}
        with self._session() as session:
            rows = session.execute(
                select(InternalLayer.name, InternalLayer.channels, InternalLayer.height, InternalLayer.width,
                       AttentionMap.encoding, AttentionMap.data)
                .join(InternalLayer, InternalLayer.id == AttentionMap.layer_id)
                .where(AttentionMap.sample_id == sample_id)
                .order_by(InternalLayer.id)
            ).all()
        return {name: arrays.decode_packed(data, encoding, (heads, height, width)).astype(np.float32)
                for name, heads, height, width, encoding, data in rows}

    def intervention(self, sample_id: int) -> Optional[np.ndarray]:
        """Every label's probability of a sample under the run's attention intervention, or None."""
        if not self.has_internals:
            return None
        with self._session() as session:
            row = session.get(Intervention, sample_id)
            return None if row is None else arrays.decode_vector(row.probs, row.encoding)
