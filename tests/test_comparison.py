"""Comparing runs: differences found, classes and samples matched by name, one normalisation for all compared runs,
both on hand-made score tables and through ``/api/v1/compare`` on ImageNet-sized summaries."""

from __future__ import annotations

import pytest

import imagenet_like
from test_server_registry import CLASSES, write_summary
from xaiboard.server import create_app
from xaiboard.server.comparison import Run, compare, matched_classes, shared_samples
from xaiboard.server.registry import summary_id
from xaiboard.server.security import ApiError

METRICS = [{"name": "Accuracy", "higher_is_better": True, "range": [0.0, 1.0], "aggregation": "mean"},
           {"name": "Sensitivity", "higher_is_better": False, "range": [0.0, None], "aggregation": "mean"}]


def table(values: dict[tuple[str, str], float], per_class: dict[tuple[str, str], dict[int, float]] | None = None,
          metrics=METRICS) -> dict:
    explainers = list(dict.fromkeys(e for e, _ in values))
    return {"explainers": explainers, "metrics": metrics,
            "scores": [{"explainer": e, "metric": m, "value": v, "count": 4,
                        "per_class": [{"index": i, "value": x, "count": 2}
                                      for i, x in (per_class or {}).get((e, m), {}).items()]}
                       for (e, m), v in values.items()]}


def run(name: str, values, labels=("cat", "dog", "bird"), samples=("a.png", "b.png", "c.png"), model="Net",
        parameters=10, size=(32, 32), per_class=None, metrics=METRICS) -> Run:
    return Run(row={"id": name, "name": name, "path": name, "status": "complete", "num_samples": len(samples)},
               table=table(values, per_class, metrics), labels=dict(enumerate(labels)),
               sample_names=dict(enumerate(samples)), model_class=model, num_parameters=parameters, image_size=size)


def test_normalisation_is_joint_over_all_runs():
    first = run("one", {("G", "Accuracy"): 0.8, ("G", "Sensitivity"): 2.0, ("C", "Accuracy"): 0.4, ("C", "Sensitivity"): 1.0})
    second = run("two", {("G", "Accuracy"): 0.6, ("G", "Sensitivity"): 4.0})
    data = compare([first, second])
    # Sensitivity's range is open above: it spans [0, 4], the largest value over both runs, in both columns
    hand_g1 = (0.8 + (1 - 2.0 / 4.0)) / 2
    hand_c1 = (0.4 + (1 - 1.0 / 4.0)) / 2
    hand_g2 = (0.6 + (1 - 4.0 / 4.0)) / 2
    assert data["comprehensive"][0] == pytest.approx({"G": hand_g1, "C": hand_c1})
    assert data["comprehensive"][1] == pytest.approx({"G": hand_g2})
    sensitivity = next(n for n in data["normalisation"] if n["metric"] == "Sensitivity")
    assert sensitivity["observed"] is True and sensitivity["bounds"] == [0.0, 4.0]
    assert next(n for n in data["normalisation"] if n["metric"] == "Accuracy")["observed"] is False
    row = next(r for r in data["table"] if (r["explainer"], r["metric"]) == ("G", "Sensitivity"))
    assert row["values"] == [2.0, 4.0] and row["normalized"] == pytest.approx([0.5, 0.0])
    assert data["comparable"] is True and data["differences"] == []


def test_differences_in_classes_model_and_dataset_are_reported():
    same = run("one", {("G", "Accuracy"): 0.5})
    other = run("two", {("G", "Accuracy"): 0.7}, labels=("cat", "dog", "fish", "cow"), model="BigNet", parameters=99,
                samples=("a.png", "x.png", "y.png", "z.png"), size=(64, 64))
    data = compare([same, other])
    kinds = [d["kind"] for d in data["differences"]]
    assert kinds == ["classes", "model", "dataset", "dataset"] and data["comparable"] is False
    text = " ".join(d["message"] for d in data["differences"])
    assert "2 classes by name in every run" in text and "only here: bird" in text and "only here: fish, cow" in text
    assert "Net (10 parameters) in one" in text and "BigNet (99 parameters) in two" in text
    assert "1 of 3 samples of one" in text and "32×32 in one; 64×64 in two" in text
    assert data["classes"] == {"matched": 2, "counts": [3, 4]}


def test_classes_and_samples_are_matched_by_name_not_position():
    first = run("one", {("G", "Accuracy"): 0.5}, per_class={("G", "Accuracy"): {0: 0.1, 1: 0.2, 2: 0.3}})
    shuffled = run("two", {("G", "Accuracy"): 0.6}, labels=("bird", "cat", "dog"), samples=("c.png", "a.png", "b.png"),
                   per_class={("G", "Accuracy"): {0: 0.9, 2: 0.7}})
    assert matched_classes([first, shuffled]) == [{"name": "cat", "indexes": [0, 1]}, {"name": "dog", "indexes": [1, 2]},
                                                  {"name": "bird", "indexes": [2, 0]}]
    data = compare([first, shuffled])
    rows = {r["name"]: r["values"] for r in data["per_class"]["rows"]}
    assert rows == {"cat": [0.1, None], "dog": [0.2, 0.7], "bird": [0.3, 0.9]}
    assert data["shared_samples"]["samples"][0] == {"name": "a.png", "ids": [0, 1]}
    assert data["comparable"] is True  # same classes, in another order
    assert shared_samples([{0: "a", 1: "a", 2: "b"}, {5: "a", 6: "b"}]) == [{"name": "b", "ids": [2, 6]}]


def test_a_metric_declared_differently_is_a_difference_and_unknown_choices_are_errors():
    flipped = [dict(METRICS[0], higher_is_better=False), METRICS[1]]
    data = compare([run("one", {("G", "Accuracy"): 0.5}), run("two", {("G", "Accuracy"): 0.5}, metrics=flipped)])
    assert [d["kind"] for d in data["differences"]] == ["metrics"] and "Accuracy" in data["differences"][0]["message"]
    with pytest.raises(ApiError):
        compare([run("one", {("G", "Accuracy"): 0.5})], metric="Nope")
    with pytest.raises(ApiError):
        compare([run("one", {("G", "Accuracy"): 0.5})], explainer="Nope")


# -- through the API, on ImageNet-sized summaries ----------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("base")
    imagenet_like.write(root / "imagenet" / "effnet")
    imagenet_like.write(root / "imagenet" / "effnet-again", seed=1)
    write_summary(root / "shapes" / "tiny", 12, ["Gradient", "GradCAM"], uncertainty=False, seed=1)
    app = create_app(root, reload_interval=0)
    yield app.test_client()
    app.extensions["xaiboard.registry"].close()


IDS = {name: summary_id(name) for name in ("imagenet/effnet", "imagenet/effnet-again", "shapes/tiny")}


def get(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.data[:300])
    return response.get_json()


def test_api_comprehensive_score_equals_a_hand_computation_with_joint_bounds(client):
    a, b = IDS["imagenet/effnet"], IDS["imagenet/effnet-again"]
    data = get(client, f"/api/v1/compare?ids={a},{b}")
    tables = [get(client, f"/api/v1/summaries/{i}/scores") for i in (a, b)]
    metrics = {m["name"]: m for m in tables[0]["metrics"]}
    values = [{(r["explainer"], r["metric"]): r["value"] for r in t["scores"]} for t in tables]
    top = max(v for run in values for (_, m), v in run.items() if m == "MaxSensitivity")

    def normalised(metric, value):
        lo, hi = metrics[metric]["range"]
        hi = top if hi is None else hi
        scaled = (value - lo) / (hi - lo)
        return scaled if metrics[metric]["higher_is_better"] else 1 - scaled

    for i, run in enumerate(values):
        for explainer in imagenet_like.EXPLAINERS:
            hand = sum(normalised(m, run[(explainer, m)]) for m in metrics) / len(metrics)
            assert data["comprehensive"][i][explainer] == pytest.approx(hand)
    # one run alone is normalised within its own span: the joint score differs for the run with the smaller span
    alone = [t["comprehensive"] for t in tables]
    assert any(alone[i][e] != pytest.approx(data["comprehensive"][i][e]) for i in (0, 1) for e in imagenet_like.EXPLAINERS)
    assert data["comparable"] is True and data["differences"] == []
    assert data["classes"] == {"matched": 1000, "counts": [1000, 1000]}
    assert data["shared_samples"]["total"] == 24


def test_api_warns_for_unrelated_runs_and_matches_only_shared_classes(client):
    a, tiny = IDS["imagenet/effnet"], IDS["shapes/tiny"]
    data = get(client, f"/api/v1/compare?ids={a},{tiny}&metric=PointingGame&explainer=GradCAM")
    assert data["comparable"] is False
    assert [d["kind"] for d in data["differences"]] == ["classes", "model", "dataset", "dataset"]
    assert "EfficientNetLite0" in data["differences"][1]["message"] and "TinyNet" in data["differences"][1]["message"]
    assert data["classes"]["matched"] == 0 and data["per_class"]["rows"] == []
    assert [s["num_classes"] for s in data["summaries"]] == [1000, len(CLASSES)]
    assert data["summaries"][0]["model"] == {"class": "EfficientNetLite0", "num_parameters": 4_652_008}
    # the same runs' classes, by name: the ImageNet pair matches every scored class
    b = IDS["imagenet/effnet-again"]
    pair = get(client, f"/api/v1/compare?ids={a},{b}&metric=PointingGame&explainer=GradCAM")
    rows = pair["per_class"]["rows"]
    names = imagenet_like.class_names()
    assert rows and all(names[r["indexes"][0]] == r["name"] == names[r["indexes"][1]] for r in rows)
    assert {"goldfish", "tabby cat"} <= {r["name"] for r in rows}
    assert (pair["per_class"]["metric"], pair["per_class"]["explainer"]) == ("PointingGame", "GradCAM")
    assert "metric" in get(client, f"/api/v1/compare?ids={a},{b}&metric=Nope", 400)["error"]
    assert "explainer" in get(client, f"/api/v1/compare?ids={a},{b}&explainer=%00", 400)["error"]
