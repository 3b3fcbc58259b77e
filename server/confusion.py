"""Ground truth against the top-1 prediction of a single-label run: accuracy, per-class hits, the most confused
pairs and a confusion matrix over the classes that matter most.

Built from whole columns (one query each), so it costs the same on 10 or 1,000 classes; the matrix is capped
because a 1,000 x 1,000 grid reads as noise. Multi-label runs have no single predicted label per sample, so they
get a message instead of counts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from xaiboard.store import Summary
from xaiboard.store.models import PREDICTION_TYPES

DEFAULT_CLASSES = 25
MAX_CLASSES = 60
MAX_PAIRS = 100
SINGLE_LABEL = "single-label"
TOP1_TYPES = (PREDICTION_TYPES.index("TP"), PREDICTION_TYPES.index("FP"))


def pairs_of(summary: Summary) -> tuple[dict[int, int], dict[int, int]]:
    """Per sample its ground-truth label, and per sample its top-1 predicted label: the explained label of type TP
    (the truth was predicted) or FP (another label was)."""
    truth_columns = summary.ground_truth_columns()
    truth: dict[int, int] = {}
    for sample_id, label in zip(truth_columns["sample_id"].tolist(), truth_columns["label_index"].tolist()):
        truth.setdefault(sample_id, label)  # single-label: one ground truth; the first if a writer gave more
    explained = summary.explained_columns()
    predicted: dict[int, int] = {}
    for sample_id, label, kind in zip(explained["sample_id"].tolist(), explained["label_index"].tolist(),
                                      explained["type"].tolist()):
        if kind in TOP1_TYPES:
            predicted.setdefault(sample_id, label)
    return truth, predicted


def confusion(summary: Summary, task: str | None, limit: int = DEFAULT_CLASSES) -> dict[str, Any]:
    """The confusion JSON of the API (see the module docstring); ``limit`` caps the matrix's classes."""
    if task != SINGLE_LABEL:
        return {"task": task, "available": False,
                "message": f"The confusion view is not available for {task or 'unknown'} runs: a sample may have "
                           "several predicted labels, so there is no single top-1 prediction to compare."}
    names = summary.label_names()
    truth, predicted = pairs_of(summary)
    samples = sorted(set(truth) & set(predicted))
    counts = Counter((truth[s], predicted[s]) for s in samples)
    totals = Counter(truth[s] for s in samples)
    hits = Counter(truth[s] for s in samples if truth[s] == predicted[s])
    as_prediction = Counter(predicted[s] for s in samples)
    errors = Counter()
    for (t, p), n in counts.items():
        if t != p:
            errors[t] += n
            errors[p] += n
    involved = sorted(set(totals) | set(as_prediction))

    def name(index: int) -> str:
        return names.get(index, str(index))

    classes = [{"index": c, "name": name(c), "samples": totals[c], "correct": hits[c], "predicted": as_prediction[c],
                "errors": errors[c]} for c in involved]
    diagonal = [{"index": c, "name": name(c), "correct": hits[c], "total": totals[c],
                 "accuracy": hits[c] / totals[c]} for c in sorted(totals)]
    confused = sorted(((t, p, n) for (t, p), n in counts.items() if t != p), key=lambda x: (-x[2], x[0], x[1]))
    pairs = [{"truth": t, "predicted": p, "count": n, "truth_name": name(t), "predicted_name": name(p)}
             for t, p, n in confused[:MAX_PAIRS]]
    # The matrix shows the classes with the most samples and errors, in label order so both axes read alike.
    limit = max(1, min(limit, MAX_CLASSES))
    top = sorted(involved, key=lambda c: (-(totals[c] + errors[c]), c))[:limit]
    shown = sorted(top)
    position = {c: i for i, c in enumerate(shown)}
    matrix = [[0] * len(shown) for _ in shown]
    for (t, p), n in counts.items():
        if t in position and p in position:
            matrix[position[t]][position[p]] += n
    correct = sum(hits.values())
    return {
        "task": task,
        "available": True,
        "message": None,
        "num_samples": len(samples),
        "num_unmatched": len(set(truth) ^ set(predicted)),
        "correct": correct,
        "accuracy": correct / len(samples) if samples else None,
        "classes": classes,
        "diagonal": diagonal,
        "pairs": pairs,
        "pairs_total": len(confused),
        "matrix": {
            "classes": shown,
            "names": [name(c) for c in shown],
            "counts": matrix,
            "total_classes": len(involved),
            "limit": limit,
            # samples whose truth or prediction falls outside the shown classes
            "left_out": sum(n for (t, p), n in counts.items() if t not in position or p not in position),
        },
    }
