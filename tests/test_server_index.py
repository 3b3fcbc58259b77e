"""The server's in-memory sample index answers exactly what the store's ``Summary.samples`` query answers."""

from __future__ import annotations

import itertools

import pytest

from test_server_registry import write_base_dir
from xaiboard.server.sample_index import SampleIndex
from xaiboard.store import QueryError, Summary

SORTS = ["id", "-id", "prob", "-prob", "uncertainty", "-uncertainty", "name", "-name", "score:GradCAM:InsertionAUC",
         "-score:GradCAM:InsertionAUC", "score:Gradient:DeletionAUC", "-score:Gradient:DeletionAUC",
         "score:Gradient:PointingGame", "-score:GradCAM:MaxSensitivity"]
FILTERS = [((), ()), ((1,), ()), ((), ("FP",)), ((0, 3), ("FN", "TN")), ((2,), ("TP",)), ((4,), ("TN",)),
           ((), ("TP", "FN", "FP", "TN")), ((1, 2, 3), ())]


@pytest.fixture(scope="module")
def summaries(tmp_path_factory):
    base = write_base_dir(tmp_path_factory.mktemp("base"), tmp_path_factory.mktemp("outside"), n=37)
    opened = {name: Summary.open(base.root / name) for name in ("shapes/run-a", "shapes/run-b", "live")}
    yield opened
    for summary in opened.values():
        summary.close()
    base.live_writer.close("interrupted")


@pytest.mark.parametrize("name", ["shapes/run-a", "shapes/run-b", "live"])
def test_index_matches_the_store_query(summaries, name):
    summary = summaries[name]
    index = SampleIndex(summary)
    sorts = [s for s in SORTS if "GradCAM" not in s] if name != "shapes/run-a" else SORTS
    for (labels, types), sort in itertools.product(FILTERS, sorts):
        for offset, limit in ((0, 200), (5, 7)):
            expected = summary.samples(labels, types, sort, offset, limit)
            got = index.page(labels, types, sort, offset, limit)
            assert got.total == expected.total, (labels, types, sort)
            assert got.samples == expected.samples, (labels, types, sort, offset, limit)


def test_index_rejects_what_the_store_rejects(summaries):
    summary = summaries["shapes/run-a"]
    index = SampleIndex(summary)
    for args in (([99], [], "id"), ([], ["XX"], "id"), ([], [], "bogus"), ([], [], "score:Nope:InsertionAUC"),
                 ([], [], "score:Gradient:Nope"), ([], [], "score:Gradient")):
        with pytest.raises(QueryError) as store_error:
            summary.samples(*args)
        with pytest.raises(QueryError) as index_error:
            index.page(*args, 0, 10)
        assert str(index_error.value) == str(store_error.value)
    with pytest.raises(QueryError):
        index.page([], [], "id", -1, 10)
