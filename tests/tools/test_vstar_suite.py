"""vstar_search through the eval suite on a V*Bench-layout folder (tiny random runlocal model):
traces saved per item, search off = plain V*Bench, the trace figure drawn from the saved file."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from cambrian import config as C
from cambrian import preflight
from cambrian.data import tokenizer
from cambrian.eval import runner
from cambrian.results import figures
from cambrian.train import build_model
from tests.conftest import small


def vstar_bench(root: str) -> str:
    """craigwu/vstar_bench's layout: test_questions.jsonl, <category>/<name>.jpg + <name>.json
    (annotations: target_object, bbox); images larger than the tower, not square."""
    rng = np.random.default_rng(0)
    rows = []
    for i, cat in enumerate(("direct_attributes", "direct_attributes", "relative_position")):
        os.makedirs(os.path.join(root, cat), exist_ok=True)
        img = rng.integers(0, 256, size=(300, 400, 3)).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(root, cat, f"sa_{i}.jpg"))
        if cat == "direct_attributes":
            q = "What is the color of the woman's umbrella?"
            ann = {"target_object": ["umbrella"], "bbox": [[10, 20, 30, 40]]}
        else:  # no target_object: the question names the two targets
            q = "Is the dog on the left or right side of the bicycle?"
            ann = {"bbox": [[1, 2, 3, 4], [5, 6, 7, 8]]}
        with open(os.path.join(root, cat, f"sa_{i}.json"), "w") as fh:
            json.dump(ann, fh)
        rows.append({"image": f"{cat}/sa_{i}.jpg", "text": f"{q}\n(A) red\n(B) blue\nAnswer with "
                     "the option's letter from the given choices directly.", "category": cat,
                     "question_id": i, "label": "A" if i % 2 else "B"})
    with open(os.path.join(root, "test_questions.jsonl"), "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("vstar")
    cfg = small(C.load("tools/vstar.py:runlocal"), str(d / "cache"))
    cfg.eval.roots.vstar = vstar_bench(str(d / "vstar_bench"))
    cfg.eval.max_new_tokens = 4
    cfg.eval.batch_size = 4
    cfg.eval.vstar.update(dict(threshold=0.8, max_depth=2, budget=8, min_size=40, max_crops=2))
    tok = tokenizer.load("synthetic")
    return cfg, tok, build_model(cfg, tok)


def _records(wd, name):
    with open(os.path.join(wd, "predictions", f"{name}.jsonl")) as fh:
        return [json.loads(x) for x in fh]


@pytest.mark.slow
def test_search_off_answers_as_plain_vstar(setup, tmp_path):
    """Absent crops are masked out: with no search the memory prompt decodes as V*Bench's."""
    cfg, tok, model = setup
    cfg.eval.vstar.mode = "off"
    res = runner.evaluate(model, cfg, tok, str(tmp_path))
    plain, searched = _records(tmp_path, "vstar"), _records(tmp_path, "vstar_search")
    assert [r["prediction"] for r in searched] == [r["prediction"] for r in plain]
    assert all(t["steps"] == [] for r in searched for t in r["search"])
    assert res["vstar_search"]["score"] == res["vstar"]["score"]


def test_search_traces_are_saved_per_item_and_drawn(setup, tmp_path):
    cfg, tok, model = setup
    cfg.eval.vstar.mode = "always"
    res = runner.evaluate(model, cfg, tok, str(tmp_path))
    assert res["vstar_search"]["n"] == res["vstar"]["n"] == 3
    recs = _records(tmp_path, "vstar_search")
    assert [[t["target"] for t in r["search"]] for r in recs] == [
        ["umbrella"], ["umbrella"], ["dog", "bicycle"]]
    for r in recs:
        for t in r["search"]:
            assert t["image_size"] == [400, 300]
            # bounds: depth 2, 8 crops scored; each step's boxes are the chosen parent's quadrants
            assert len(t["steps"]) == 2 and t["scored"] == 8
            prev = [0, 0, 400, 300]
            for st in t["steps"]:
                assert all(0 <= b[0] < b[2] <= 400 and 0 <= b[1] < b[3] <= 300
                           for b in st["boxes"])
                assert st["boxes"][0][:2] == prev[:2] and st["boxes"][3][2:] == prev[2:]
                assert all(0.0 <= s <= 1.0 for s in st["scores"])
                prev = st["boxes"][st["chosen"]]
            assert t["box"] == prev
    fig = figures.saved_trace(os.path.join(tmp_path, "predictions", "vstar_search.jsonl"),
                              cfg.eval.roots.vstar, "2")
    assert len(fig.axes) == 3  # the image + one crop per target
    out = figures.save(fig, str(tmp_path / "fig" / "trace.png"))
    with open(tmp_path / "fig" / "figures.json") as fh:
        assert json.load(fh)["trace.png"]["kind"] == "search_trace"
    assert os.path.getsize(out) > 0


def test_preflight_names_the_vstar_folder_vstar_search_reads(tmp_path):
    cfg = C.load("tools/vstar.py", ["eval.suite=vstar_search", f"eval.root={tmp_path}/none"])
    [line] = preflight.benchmark_problems(cfg)
    assert line.startswith("eval.root: benchmark vstar_search not found at ")
    assert f"{tmp_path}/none/vstar;" in line and "--config.eval.roots.vstar=DIR" in line


def test_config_eval_only_and_runlocal(tmp_path):
    """Without args: eval-only (the model comes from config.checkpoint's run); :runlocal: random
    weights only, on the synthetic search task."""
    c = C.load("tools/vstar.py", [f"checkpoint={tmp_path}"])
    assert not c.model.encoders and c.eval.suite == "vstar,vstar_search"
    r = C.load("tools/vstar.py:runlocal")
    assert all(e.init == "random" for e in r.model.encoders.values())
    assert r.model.llm.init == "random" and r.stages.stage2.steps > 0
    assert r.eval.roots.vstar.endswith("/bench") and r.eval.vstar.mode == "always"


def test_yes_no_read_where_the_replies_differ():
    """The runlocal BPE renders " Yes" as " " + "Y" + "es" and " No" as " " + "N" + "o": the
    scorer must append the shared space and compare "Y" with "N" (not the space with itself)."""
    from cambrian.data import chat_templates
    from cambrian.tools import vstar_model

    tok = tokenizer.load("synthetic")
    prefix, yes, no = vstar_model.reply_split(tok, chat_templates.get("vicuna_v1"), "",
                                              ("Yes", "yes"), ("No", "no"))
    words = [[tok.decode([i]) for i in ids] for ids in (prefix, yes, no)]
    assert words == [[" "], ["Y"], ["N", "n"]]
