import json

import numpy as np
import pytest
from PIL import Image

from cambrian.tools import sources
from cambrian.tools.mmvp import build, patterns
from tests.data import fakes


@pytest.mark.parametrize("question,options,want", [
    # MMVP-style questions, one per pattern
    ("Is the dog facing left or right from the camera's perspective?", ["Left", "Right"],
     "orientation_and_direction"),
    ("Is the school bus driving towards or away from the camera?", ["Towards", "Away"],
     "orientation_and_direction"),
    ("Can you see a window in this image?", ["Yes", "No"], "presence_of_specific_features"),
    ("Are the butterfly's wings open or closed?", ["Open", "Closed"], "state_and_condition"),
    ("How many eyes can you see on the animal?", ["One", "Two"], "quantity_and_count"),
    ("Is the cup on the left of the plate?", ["Yes", "No"], "positional_and_relational_context"),
    ("What is the colour of the flame?", ["Red", "Yellow"], "color_and_appearance"),
    ("Is the table round or rectangular?", ["Round", "Rectangular"],
     "structural_and_physical_characteristics"),
    ("What does the sign say?", ["Stop", "Go"], "text"),
    ("Is the photo taken from a high or low angle?", ["High", "Low"],
     "viewpoint_and_perspective"),
    # overlaps: the earlier rule wins
    ("How many red cars are there?", ["1", "2"], "quantity_and_count"),
    ("What colour is the word on the mug?", ["Blue", "Black"], "text"),
    ("Is it a cat or a dog?", ["Cat", "Dog"], patterns.UNTAGGED),
])
def test_keyword_rules(question, options, want):
    assert patterns.tag_pair([question, question], options) == want


def test_every_pattern_has_a_rule_and_reports_use_the_papers_order():
    assert sorted(patterns.PATTERNS) == sorted(name for name, _ in patterns.RULES)
    assert len(patterns.PATTERNS) == 9 and patterns.PATTERNS[0] == "orientation_and_direction"


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def two_images(tmp_path):
    refs = []
    for i, colour in enumerate([(200, 30, 30), (30, 30, 200)]):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (20, 10), colour).save(p)
        refs.append(str(p))
    return refs


def _pair(refs, **kw):
    return {"image_1": refs[0], "image_2": refs[1], "question": "Is the door open or closed?",
            "options": ["Open", "Closed"], "answer_1": "a", "answer_2": "Closed", **kw}


@pytest.mark.parametrize("edit,message", [
    (dict(options=["Open (a bit)", "Closed"]), "may not contain parentheses"),
    (dict(options=["Open"]), "expected a list of two texts"),
    (dict(answer_2="ajar"), r"answer_2='ajar'; expected 'a', 'b' or one of the options"),
    (dict(question=["one?"]), "expected a text or a list of two"),
    (dict(pattern="colour"), "pattern='colour'; expected one of orientation_and_direction"),
])
def test_bad_annotations_name_the_line_and_field(tmp_path, two_images, edit, message):
    path = _write(tmp_path / "ann.jsonl", [_pair(two_images), _pair(two_images, **edit)])
    with pytest.raises(build.AnnotationError, match=rf"ann.jsonl:2: .*{message}"):
        build.build(path, str(tmp_path / "bench"))


def test_partial_annotation_is_an_error_even_when_skipping(tmp_path, two_images):
    partial = {k: v for k, v in _pair(two_images).items() if k != "answer_2"}
    path = _write(tmp_path / "ann.jsonl", [_pair(two_images), "", partial])
    with pytest.raises(build.AnnotationError, match=r"ann.jsonl:3: missing answer_2"):
        build.build(path, str(tmp_path / "bench"), skip_unannotated=True)
    path = _write(tmp_path / "ann.jsonl", ["[1, 2]"])
    with pytest.raises(build.AnnotationError, match=r"ann.jsonl:1: expected a JSON object"):
        build.build(path, str(tmp_path / "bench"))


def test_build_writes_mmvp_layout_and_keeps_annotator_patterns(tmp_path, two_images):
    path = _write(tmp_path / "ann.jsonl", [
        _pair(two_images, rank=3, sim_a=0.97, sim_b=0.4),
        _pair(two_images, question=["How many doors?", "How many doors?"],
              options=["One", "Two"], answer_1="(b)", answer_2="A",
              pattern="viewpoint_and_perspective")])
    out = tmp_path / "bench"
    assert build.build(path, str(out)) == {"folder": str(out), "pairs": 2, "questions": 4,
                                           "skipped": 0}
    assert (out / "Questions.csv").read_text().splitlines() == [
        "Index,Question,Options,Correct Answer",
        "1,Is the door open or closed?,(a) Open (b) Closed,(a)",
        "2,Is the door open or closed?,(a) Open (b) Closed,(b)",
        "3,How many doors?,(a) One (b) Two,(b)",
        "4,How many doors?,(a) One (b) Two,(a)"]
    img = np.asarray(Image.open(out / "MMVP Images" / "2.jpg"))
    assert img.shape == (10, 20, 3) and abs(int(img[..., 2].mean()) - 200) < 8
    prov = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    assert prov[0]["pattern"] == "state_and_condition" and prov[0]["sim_a"] == 0.97
    assert build.pattern_overrides(str(out)) == {3: "viewpoint_and_perspective"}
    samples = patterns.read_questions(str(out))
    assert patterns.pair_patterns(samples, build.pattern_overrides(str(out))) == [
        "state_and_condition", "viewpoint_and_perspective"]
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        build.build(path, str(out))


def test_recipe_images_are_read_back_by_reference(tmp_path):
    from cambrian.data.build import build as build_recipe
    from cambrian.data.recipe import Recipe, Source

    d = tmp_path / "data"
    fakes.image_folder(str(d / "imgs"), {f"{i}.png": i for i in range(3)})
    fakes.write_json(str(d / "llava.json"), [fakes.record(i, f"{i}.png") for i in range(3)]
                     + [fakes.record(9, None)])
    out = tmp_path / "built"
    build_recipe(Recipe(name="mini", shard_size=2, seed=0, sources=(
        Source("vqa", str(d / "llava.json"), "general", images=str(d / "imgs")),)), str(out))
    items = sources.recipe(str(out))
    assert len(items) == 3 and all(it.ref.startswith(f"{out}#") for it in items)
    assert len({it.key for it in items}) == 3
    for it in items:
        np.testing.assert_array_equal(sources.read_ref(it.ref), it.read())
    got = sorted(it.read().tobytes() for it in items)
    want = sorted(np.asarray(fakes.block_image(i)).tobytes() for i in range(3))
    assert got == want
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        sources.recipe(str(d))
