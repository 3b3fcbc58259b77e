"""The summary store: one SQLite database per summary directory, written by the runner and read by the server.

Importing this package never imports torch.
"""

from .errors import (
    CorruptSummaryError,
    NewerSummaryError,
    NotASummaryError,
    OutdatedSummaryError,
    SummaryError,
)
from .records import (
    AttentionMapRecord,
    Batch,
    BoxRecord,
    CurveRecord,
    FailureRecord,
    FeatureMapRecord,
    InterventionRecord,
    LayerRecord,
    PathRecord,
    PredictionRecord,
    ProbabilityRecord,
    SaliencyRecord,
    SampleRecord,
    ScoreRecord,
)
from .summary import QueryError, Summary
from .writer import SummaryWriter
from .database import DB_NAME, file_signature, head_revision, is_summary_dir, upgrade
from .discovery import contained_path, find_summary_dirs

__all__ = [
    "AttentionMapRecord", "Batch", "BoxRecord", "FeatureMapRecord", "InterventionRecord", "LayerRecord", "CorruptSummaryError", "CurveRecord", "DB_NAME", "FailureRecord", "NewerSummaryError", "NotASummaryError",
    "OutdatedSummaryError", "PathRecord", "PredictionRecord", "ProbabilityRecord", "QueryError", "SaliencyRecord", "SampleRecord",
    "ScoreRecord", "Summary", "SummaryError", "SummaryWriter", "contained_path", "file_signature",
    "find_summary_dirs", "head_revision",
    "is_summary_dir", "upgrade",
]
