import glob
import json
import os

import ml_collections
import pytest

from cambrian.config import parse_arg
from cambrian.data import prompts as P
from cambrian.data.build import build
from cambrian.data.recipe import Recipe, RecipeError, Source, from_dict, load_recipe

from .fakes import block_image, conv, encode

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = os.path.join(REPO, "data_recipes")


def test_from_dict_and_configdict():
    d = {"name": "mix", "seed": 1, "ratios": {"g": 1.0},
         "sources": [{"name": "a", "path": "a.json", "category": "g", "cap": 5,
                      "prompts": [P.SHORT_ANSWER, {"text": P.LETTER, "when": "multiple_choice"}]}],
         "dedup": {"max_distance": 2}}
    r = from_dict(d)
    assert r.sources[0].path == ("a.json",) and r.sources[0].cap == 5
    assert [p.when for p in r.sources[0].prompts] == ["always", "multiple_choice"]
    assert r.dedup.max_distance == 2
    assert from_dict(ml_collections.ConfigDict(d)).hash() == r.hash()
    assert from_dict({**d, "seed": 2}).hash() != r.hash()


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, r"unknown field\(s\) \['colour'\]"),
    ({"sources": [{"name": "a", "path": "a.json", "category": "g", "weigth": 2}]},
     r"sources\[0\]: unknown field\(s\) \['weigth'\]"),
    ({"sources": [{"name": "a", "path": "a.json", "category": "g", "format": "csv"}]},
     "source 'a': unknown format 'csv'"),
    ({"sources": [{"name": "a", "path": "a.json", "category": "g", "cap": -1}]}, "must be >= 0"),
    ({"sources": [{"name": "a", "path": (), "category": "g"}]}, "names no annotation file"),
    ({"sources": [{"name": "a", "path": "x", "category": "g"}] * 2}, "duplicate source names"),
    ({"ratios": {"g": 1.0, "ocr": 1.0}}, r"ratios name categories \['ocr'\]"),
    ({"ratios": {"other": 1.0}}, r"categories \['g'\] have sources but no ratio"),
    ({"name": "Mix-1"}, "snake_case"),
])
def test_invalid_recipes_name_the_field(change, message):
    d = {"name": "mix", "sources": [{"name": "a", "path": "a.json", "category": "g"}], **change}
    with pytest.raises(RecipeError, match=message):
        from_dict(d)


def test_parse_arg():
    a = parse_arg("root=/x,t=5,prompts=false,fast", root="r", t=1, prompts=True, fast=False)
    assert (a.root, a.t, a.prompts, a.fast) == ("/x", 5, False, True)


@pytest.mark.parametrize("arg, message", [
    ("prompts=flase", r"prompts: expected a boolean, got 'flase'"),  # not silently False
    ("t=ten", r"t: expected int, got 'ten'"),
    ("tt=1", r"unknown config argument 'tt'; known: root, t, prompts"),
])
def test_a_bad_recipe_argument_names_the_recipe_file_and_the_argument(tmp_path, arg, message):
    path = tmp_path / "mix.py"
    path.write_text(
        "from cambrian.config import parse_arg\n"
        "from cambrian.data.recipe import Recipe, Source\n\n\n"
        "def get_recipe(arg=None):\n"
        "    a = parse_arg(arg, root='r', t=1, prompts=True)\n"
        "    return Recipe(name='mix', sources=(Source('s', a.root + '/d.json', 'g', cap=a.t),))\n")
    assert load_recipe(f"{path}:t=5").sources[0].cap == 5
    with pytest.raises(RecipeError, match=rf"{path}: {message}"):
        load_recipe(f"{path}:{arg}")


def test_claims():
    s = Source("s", "f.jsonl", "g", match="chart.json", image_prefix="chartqa/")
    assert s.claims({"source": "chart.json", "image": "chartqa/1.png"})
    assert not s.claims({"source": "chart.json", "image": "dvqa/1.png"})
    assert not s.claims({"source": "other.json", "image": "chartqa/1.png"})
    assert not s.claims({"source": "chart.json"})
    text = Source("t", "f.jsonl", "g", has_image=False)
    assert text.claims({"id": 1}) and not text.claims({"image": "a.png"})


def test_load_recipe_errors(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(str(tmp_path / "nope.py"))
    (tmp_path / "r.py").write_text("X = 1\n")
    with pytest.raises(RecipeError, match="defines no get_recipe"):
        load_recipe(str(tmp_path / "r.py"))
    (tmp_path / "q.py").write_text("def get_recipe():\n    return {}\n")
    with pytest.raises(RecipeError, match="takes no argument"):
        load_recipe(str(tmp_path / "q.py") + ":a=1")


def test_every_shipped_recipe_loads():
    files = sorted(glob.glob(os.path.join(RECIPES, "*.py")))
    names = {os.path.basename(f) for f in files} - {"build.py"}
    assert names == {"llava_665k.py", "cambrian_737k.py", "cambrian_7m.py",
                     "cambrian_alignment_2_5m.py"}
    for n in names:
        r = load_recipe(os.path.join(RECIPES, n) + ":root=/data/x")
        assert isinstance(r, Recipe) and r.name == n[:-3]


def test_cambrian_7m_curation_rules():
    r = load_recipe(os.path.join(RECIPES, "cambrian_7m.py"))
    by = {s.name: s for s in r.sources}
    assert by["dvqa"].remove == 1_550_000 and by["clevr"].remove == 350_000
    assert by["websight"].cap == 0
    assert {s.cap for n, s in by.items() if n != "websight"} == {350_000}
    assert {s.path for s in r.sources} == {("data/Cambrian-10M/jsons/Cambrian10M.jsonl",)}
    texts = {n: [p.text for p in s.prompts] for n, s in by.items() if s.prompts}
    one = ("dvqa", "ai2d", "clevr", "tallyqa", "pathvqa", "hitab", "wtq", "raven", "oodvqa",
           "sketchyvqa")
    assert texts == {**{n: [P.SHORT_ANSWER] for n in one},
                     "chartqa": [P.SHORT_NUMBER], "docvqa": [P.SHORT_DIRECT],
                     "screenqa": [P.NO_ANSWER, P.SHORT_ANSWER],
                     "q_instruct": [P.SHORT_ANSWER, P.OPTION_LETTER],
                     "q_align": [P.SHORT_ANSWER, P.OPTION_LETTER],
                     "iconqa": [P.SHORT_ANSWER, P.LETTER], "visual7w": [P.OPTION_LETTER],
                     "intergps": [P.LETTER], "tqa": [P.LETTER], "mathinstruct": [P.REASONING],
                     "design2code": [P.HTML_CODE], "vizwiz": [P.UNANSWERABLE]}
    assert by["q_instruct"].prompts[1].when == "multiple_choice"
    r = load_recipe(os.path.join(RECIPES, "cambrian_7m.py") + ":t=0,prompts=false,ratios=exp5")
    assert {s.cap for s in r.sources} == {None, 0}
    assert not any(s.prompts for s in r.sources)
    assert r.ratios["general"] == 34.52
    with pytest.raises(RecipeError, match="known ratio sets"):
        load_recipe(os.path.join(RECIPES, "cambrian_7m.py") + ":ratios=exp9")


def test_cambrian_737k_adds_three_capped_sources():
    r = load_recipe(os.path.join(RECIPES, "cambrian_737k.py"))
    caps = {s.name: s.cap for s in r.sources}
    assert {n: c for n, c in caps.items() if c is not None} == {
        "ai2d": 15_501, "docvqa": 14_999, "dvqa": 13_000}
    assert not any(s.prompts for s in r.sources)
    assert sum(1 for s in r.sources if s.name.startswith("llava_")) == 6


def test_cambrian_7m_recipe_on_a_miniature_cambrian_10m(tmp_path):
    """The shipped recipe end to end on a few records in the real Cambrian10M.jsonl layout."""
    root = tmp_path / "Cambrian-10M"
    (root / "jsons").mkdir(parents=True)
    recs, seed = [], 0
    for folder, field, n in (("screen_qa", "screenqa_79k.json", 3), ("dvqa", "dvqa_2325k.json", 2),
                             ("websight", "websight_800k.json", 2)):
        (root / folder).mkdir()
        for i in range(n):
            seed += 1
            (root / folder / f"{i}.png").write_bytes(encode(block_image(seed)))
            recs.append({"id": f"{folder}{i}", "image": f"{folder}/{i}.png", "source": field,
                         "conversations": conv(f"Question {i}?", f"A{i}")})
    recs += [{"id": f"o{i}", "source": "orca_994k.json", "conversations": conv("Hi?", f"Yo {i}",
                                                                               image=False)}
             for i in range(3)]
    recs.append({"id": "u", "source": "mystery.json", "conversations": conv("?", "!", False)})
    (root / "jsons" / "Cambrian10M.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))

    r = load_recipe(os.path.join(RECIPES, "cambrian_7m.py") + f":root={root},t=2")
    m = build(r, None, dry_run=True)
    kept = {n: s["kept"] for n, s in m["sources"].items() if s["read"]}
    assert kept == {"screenqa": 2, "dvqa": 0, "websight": 0, "openorca": 2}
    assert m["sources"]["dvqa"]["removed"] == 2  # the 1.55M removal takes all there is
    assert m["sources"]["screenqa"]["prompted"] == 2
    assert m["totals"]["unassigned"] == 1
    assert any("'vizwiz' matched no records" in w for w in m["warnings"])
