import pytest

from cambrian.eval.benchmarks import synthetic as S

MC = {"format": "mc", "answer": "B", "chance": 0.25}
SA = {"format": "short", "answer": "triangle", "chance": 1 / 3}


@pytest.mark.parametrize("item,pred,ok", [
    (MC, "B", True), (MC, " B", True), (MC, "(B) blue", True), (MC, "B.", True),
    (MC, "A", False), (MC, "Blue", False), (MC, "", False), (MC, "BB", False),
    (SA, "triangle", True), (SA, " Triangle.", True), (SA, "a triangle", False),
    (SA, "triangles", False),
])
def test_correct_hand_derived(item, pred, ok):
    assert S.correct(item, pred) is ok


def test_score_and_chance_are_percentages():
    recs = [{**MC, "prediction": "B", "kind": "colour"},
            {**MC, "prediction": "C", "kind": "colour"},
            {**SA, "prediction": "circle", "kind": "shape"},
            {**SA, "prediction": "triangle", "kind": "shape"}]
    r = S.BENCHMARKS["synthetic_general"].score(recs)
    assert r["n"] == 4 and r["score"] == 50.0
    assert r["chance"] == pytest.approx(100 * (0.25 + 0.25 + 1 / 3 + 1 / 3) / 4)
    assert r["kinds"]["colour"]["score"] == 50.0 and r["kinds"]["shape"]["n"] == 2
    assert r["kinds"]["shape"]["chance"] == pytest.approx(100 / 3)
