"""Each benchmark loader on a small file written in its published schema (HF parquet exports with
image cells {"bytes", "path"}, MMVP's CSV + image folder, V*'s JSONL + images). Prompts are checked
against the text Cambrian's eval scripts build (cambrian.md §4.1, scoring.md §2)."""

from __future__ import annotations

import importlib
import io
import json

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from cambrian.eval.benchmarks.common import DataFormatError

MCQ = "Answer with the option's letter from the given choices directly."
SHORT = "Answer the question using a single word or phrase."
LETTER_ONLY = "Please answer directly with only the letter of the correct option and nothing else."


def png(color=(200, 30, 30), size=(4, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def cell(color=(200, 30, 30)) -> dict:
    return {"bytes": png(color), "path": "img.png"}


def write(path, rows) -> None:
    fs, p = fsspec.core.url_to_fs(str(path))
    fs.makedirs(p.rsplit("/", 1)[0], exist_ok=True)
    with fsspec.open(str(path), "wb") as f:
        pq.write_table(pa.Table.from_pylist(rows), f)


def bench(name):
    return importlib.import_module(f"cambrian.eval.benchmarks.{name}")


def scored(module, samples, predictions, profile="cambrian", **kw):
    records = [{**{k: v for k, v in s.items() if k != "image"}, "prediction": p}
               for s, p in zip(samples, predictions)]
    json.dumps(records)  # what the runner saves must be JSON
    return module.score(records, profile, **kw)


def check_image(sample):
    assert sample["image"].dtype == np.uint8 and sample["image"].shape == (3, 4, 3)


def test_mme(tmp_path):
    q = "Is there a dog in this image? Please answer yes or no."
    write(tmp_path / "data/test-00000-of-00001.parquet", [
        {"question_id": "existence/1.png", "image": cell(), "question": q, "answer": "Yes",
         "category": "existence"},
        {"question_id": "existence/1.png", "image": cell(), "question": q.replace("dog", "cat"),
         "answer": "No", "category": "existence"}])
    mme = bench("mme")
    samples = mme.load(str(tmp_path))
    assert samples[0]["prompt"] == q + "\n" + SHORT
    check_image(samples[0])
    res = scored(mme, samples, ["Yes", "No"])
    assert res["score"] == pytest.approx(200.0) and res["perception"] == pytest.approx(200.0)
    assert scored(mme, samples, ["Yes!", "No"])["score"] == pytest.approx(50.0)
    assert scored(mme, samples, ["Yes!", "No"], "vlmevalkit")["score"] == pytest.approx(200.0)
    assert mme.MAX_NEW_TOKENS == 32 and mme.GROUP == "general"


def test_parquet_on_an_fsspec_filesystem():
    root = "memory://bench/mme"
    write(f"{root}/data/test-00000-of-00001.parquet", [
        {"question_id": "a", "image": cell(), "question": "Q?", "answer": "Yes",
         "category": "OCR"}])
    assert bench("mme").load(root)[0]["prompt"] == "Q?\n" + SHORT


def test_mmbench_circular(tmp_path):
    row = {"question": "What color?", "hint": "A hint.", "A": "red", "B": "green", "C": "blue",
           "D": "nan", "answer": "B", "category": "c", "l2-category": "l2", "source": "s",
           "image": cell(), "split": "dev"}
    write(tmp_path / "data/dev-00000-of-00001.parquet", [
        {**row, "index": 7},
        {**row, "index": 1_000_007, "hint": "nan", "A": "green", "B": "red", "answer": "A"}])
    mmbench = bench("mmbench")
    s = mmbench.load(str(tmp_path))
    assert s[0]["prompt"] == f"A hint.\nWhat color? Options:\nA. red\nB. green\nC. blue\n{MCQ}"
    assert s[1]["prompt"] == f"What color? Options:\nA. green\nB. red\nC. blue\n{MCQ}"
    assert s[0]["choices"] == {"A": "red", "B": "green", "C": "blue"}
    assert s[0]["circular_key"] == s[1]["circular_key"]
    assert scored(mmbench, s, ["B", "A"])["score"] == 100.0
    res = scored(mmbench, s, ["B", "B"])
    assert res["score"] == 0.0 and res["accuracy"] == 50.0
    assert scored(mmbench, s, ["B", "A"], "lmms-eval")["score"] == 100.0


def test_seed_skips_multi_image_rows(tmp_path):
    base = {"question": "How many?", "choice_a": "1", "choice_b": "2", "choice_c": "3",
            "choice_d": "4", "answer": "C", "question_type_id": 5, "data_type": "image"}
    write(tmp_path / "data/test-00000-of-00001.parquet", [
        {**base, "question_id": "v1", "image": [cell(), cell()]},
        {**base, "question_id": "i1", "image": [cell()]}])
    seed = bench("seed")
    s = seed.load(str(tmp_path))
    assert [x["id"] for x in s] == ["i1"]
    assert s[0]["prompt"] == f"How many? Options:\nA. 1\nB. 2\nC. 3\nD. 4\n{MCQ}"
    assert scored(seed, s, ["C. 3"])["score"] == 100.0


def test_gqa_joins_images(tmp_path):
    write(tmp_path / "testdev_balanced_instructions/testdev-00000-of-00001.parquet", [
        {"id": "q1", "imageId": "n1", "question": "What is it?", "answer": "table"}])
    write(tmp_path / "testdev_balanced_images/testdev-00000-of-00001.parquet", [
        {"id": "n0", "image": cell((0, 0, 0))}, {"id": "n1", "image": cell()}])
    gqa = bench("gqa")
    s = gqa.load(str(tmp_path))
    assert s[0]["prompt"] == "What is it?\n" + SHORT and s[0]["image"][0, 0, 0] == 200
    assert scored(gqa, s, ["Table."])["score"] == 100.0
    assert scored(gqa, s, ["Table."], "vlmevalkit")["score"] == 0.0
    assert gqa.MAX_NEW_TOKENS == 128


def test_scienceqa_image_questions_only(tmp_path):
    base = {"question": "Which is a mammal?", "choices": ["frog", "dog"], "answer": 1,
            "hint": "", "subject": "natural science"}
    write(tmp_path / "data/test-00000-of-00001.parquet", [
        {**base, "image": None}, {**base, "hint": "Look closely.", "image": cell()}])
    sqa = bench("scienceqa")
    s = sqa.load(str(tmp_path))
    assert len(s) == 1 and s[0]["answer"] == "B"
    assert s[0]["prompt"] == f"Look closely. Which is a mammal?\nA. frog\nB. dog\n{LETTER_ONLY}"
    assert scored(sqa, s, ["dog"])["score"] == 100.0


def test_mmmu(tmp_path):
    write(tmp_path / "data/validation-00000-of-00001.parquet", [
        {"id": "validation_Physics_1", "question": "<image 1> How long is it?",
         "options": "['3 m', '4 m']", "answer": "B", "question_type": "multiple-choice",
         "image_1": cell(), "image_2": None},
        {"id": "validation_Math_2", "question": "How many sides?", "options": "[]",
         "answer": "100", "question_type": "open", "image_1": cell(), "image_2": None}])
    mmmu = bench("mmmu")
    s = mmmu.load(str(tmp_path))
    # The tag is removed after the image token, so Cambrian's leading space survives.
    assert s[0]["prompt"] == f" How long is it? Options:\nA. 3 m\nB. 4 m\n{MCQ}"
    assert s[1]["prompt"] == f"How many sides?\n{SHORT}"
    assert s[0]["category"] == "Physics"
    assert scored(mmmu, s, ["B", "95"])["score"] == 50.0       # 5 % of the prediction
    assert scored(mmmu, s, ["B", "95"], "fixed")["score"] == 100.0
    assert scored(mmmu, s, ["B", "100"], "lmms-eval")["score"] == 50.0  # open always 0


def test_mathvista(tmp_path):
    write(tmp_path / "data/testmini-00000-of-00001.parquet", [
        {"pid": "1", "query": "Hint: pick one.\nQuestion: Which?\nChoices:\n(A) 1\n(B) 2",
         "decoded_image": cell(), "choices": ["1", "2"], "answer": "2",
         "question_type": "multi_choice", "answer_type": "text", "precision": None,
         "metadata": {"category": "math"}},
        {"pid": "2", "query": "Question: How many?", "decoded_image": cell(), "choices": None,
         "answer": "3", "question_type": "free_form", "answer_type": "integer",
         "precision": None, "metadata": {"category": "math"}}])
    mv = bench("mathvista")
    s = mv.load(str(tmp_path))
    assert s[0]["answer"] == "B"
    assert s[0]["prompt"].endswith("(B) 2\nFirst show your reasoning process and then give the "
                                   "final answer.")
    assert s[1]["prompt"] == "Question: How many?\n" + SHORT
    assert scored(mv, s, ["B.", "3"])["score"] == 50.0  # "B." is never extracted
    assert scored(mv, s, ["B.", "3"], "fixed")["score"] == 100.0
    # lmms-eval / VLMEvalKit: option text and int()-readable answers without the GPT extractor
    assert scored(mv, s, ["2", " 3 "], "lmms-eval")["score"] == 100.0
    assert scored(mv, s, ["B", "3.0"], "vlmevalkit")["deferred"] == 1


def test_ai2d(tmp_path):
    write(tmp_path / "data/test-00000-of-00001.parquet", [
        {"question": "Which stage?", "options": ["egg", "larva"], "answer": "1",
         "image": cell()}])
    ai2d = bench("ai2d")
    s = ai2d.load(str(tmp_path))
    assert s[0]["prompt"] == f"Which stage?\nA. egg\nB. larva\n{MCQ}" and s[0]["answer"] == "B"
    assert scored(ai2d, s, ["(B)"])["score"] == 100.0


def test_chartqa_ocrbench_textvqa_docvqa(tmp_path):
    write(tmp_path / "chartqa/data/test-00000-of-00001.parquet", [
        {"type": "human_test", "question": "Peak value?", "answer": "50", "image": cell()}])
    s = bench("chartqa").load(str(tmp_path / "chartqa"))
    assert s[0]["prompt"] == "Peak value?\nAnswer the question using a single number or phrase."
    assert scored(bench("chartqa"), s, ["0.5"])["score"] == 0.0
    assert scored(bench("chartqa"), s, ["50%"], "lmms-eval")["score"] == 0.0

    write(tmp_path / "ocr/data/test-00000-of-00001.parquet", [
        {"dataset": "IIIT5K", "question": "What is written?", "question_type":
         "Regular Text Recognition", "answer": ["hello"], "image": cell()}])
    s = bench("ocrbench").load(str(tmp_path / "ocr"))
    assert s[0]["prompt"] == "What is written?\nGive the short answer directly."
    res = scored(bench("ocrbench"), s, ["It says HELLO."])
    assert res["score"] == 100.0 and res["final_score"] == 1

    write(tmp_path / "textvqa/data/validation-00000-of-00001.parquet", [
        {"question_id": 1, "question": "what brand?", "answers": ["nike"] * 10,
         "ocr_tokens": ["NIKE", "JUST"], "image": cell()}])
    s = bench("textvqa").load(str(tmp_path / "textvqa"))
    assert s[0]["prompt"] == f"what brand?\nReference OCR tokens: NIKE, JUST\n{SHORT}"
    assert scored(bench("textvqa"), s, ["Nike."])["score"] == 100.0

    write(tmp_path / "docvqa/DocVQA/validation-00000-of-00001.parquet", [
        {"questionId": 5, "question": "Date?", "answers": ["1 May"], "image": cell()}])
    s = bench("docvqa").load(str(tmp_path / "docvqa"))
    assert s[0]["prompt"] == "Date?\nGive the short answer directly."
    assert scored(bench("docvqa"), s, ["1 may"])["score"] == 100.0


def test_mmvp_csv_and_image_folder(tmp_path):
    (tmp_path / "MMVP Images").mkdir()
    for i in (1, 2):
        (tmp_path / "MMVP Images" / f"{i}.jpg").write_bytes(png())
    (tmp_path / "Questions.csv").write_text(
        "Index,Question,Options,Correct Answer\n"
        '1,Is the door open?,(a) Open (b) Closed,(a)\n'
        '2,Is the door open?,(a) Open (b) Closed,(b)\n')
    mmvp = bench("mmvp")
    s = mmvp.load(str(tmp_path))
    assert s[0]["prompt"] == f"Is the door open? Options:\nA. Open\nB. Closed\n{MCQ}"
    assert s[1]["answer"] == "B" and s[0]["choices"] == {"A": "Open", "B": "Closed"}
    assert scored(mmvp, s, ["a", "closed"])["score"] == 100.0
    assert scored(mmvp, s, ["a", "closed"], "lmms-eval")["score"] == 0.0


def test_realworldqa_prompt_is_the_question(tmp_path):
    q = "Which way?\nA. left\nB. right\nPlease answer directly with only the letter."
    write(tmp_path / "data/test-00000-of-00001.parquet", [
        {"question": q, "answer": "B", "image": cell()},
        {"question": "How many cars?", "answer": "3", "image": cell()}])
    rwqa = bench("realworldqa")
    s = rwqa.load(str(tmp_path))
    assert s[0]["prompt"] == q and s[0]["choices"] == {"A": "left", "B": "right"}
    assert scored(rwqa, s, ["B", "3 cars"])["score"] == 100.0
    assert scored(rwqa, s, ["B. right", "3"])["score"] == 50.0  # first token "b." is wrong
    res = scored(rwqa, s, ["", "3"])
    assert res["score"] == 50.0 and res["harness_errors"] == 1


def test_cvbench_card_formula(tmp_path):
    def row(idx, source, answer):
        return {"idx": idx, "type": "2D" if source != "Omni3D" else "3D", "task": "Count",
                "source": source, "prompt": "How many chairs?\n(A) 1\n(B) 2",
                "choices": ["1", "2"], "answer": answer, "image": cell()}
    write(tmp_path / "test_2d.parquet", [row(0, "ADE20K", "(A)"), row(1, "ADE20K", "(A)"),
                                         row(2, "COCO", "(B)")])
    write(tmp_path / "test_3d.parquet", [row(3, "Omni3D", "(A)"), row(4, "Omni3D", "(B)")])
    cv = bench("cvbench")
    s = cv.load(str(tmp_path))
    assert s[0]["prompt"] == f"How many chairs?\n(A) 1\n(B) 2\n{MCQ}" and s[0]["answer"] == "A"
    res = scored(cv, s, ["A", "A", "A", "A", "A"])  # ADE 100, COCO 0, Omni 50
    assert res["2d"] == 50.0 and res["3d"] == 50.0 and res["score"] == 50.0
    assert scored(cv, s, ["A"] * 5, "lmms-eval")["score"] == pytest.approx(60.0)  # micro


def test_vstar_pope_mmstar_blink(tmp_path):
    (tmp_path / "vstar/direct_attributes").mkdir(parents=True)
    (tmp_path / "vstar/direct_attributes/a.jpg").write_bytes(png())
    text = "What color is the cup? (A) red (B) blue\nAnswer with the option's letter."
    (tmp_path / "vstar/test_questions.jsonl").write_text(json.dumps(
        {"image": "direct_attributes/a.jpg", "text": text, "label": "B",
         "category": "direct_attributes", "question_id": 0}) + "\n")
    s = bench("vstar").load(str(tmp_path / "vstar"))
    assert s[0]["prompt"] == text and s[0]["choices"] == {"A": "red", "B": "blue"}
    assert bench("vstar").GROUP is None and bench("vstar").MAX_NEW_TOKENS == 32

    write(tmp_path / "pope/data/test-00000-of-00001.parquet", [
        {"question_id": "1", "question": "Is there a cat in the image?", "answer": "no",
         "category": "random", "image": cell()}])
    s = bench("pope").load(str(tmp_path / "pope"))
    assert s[0]["prompt"] == "Is there a cat in the image?\n" + SHORT
    assert scored(bench("pope"), s, ["No, there is not."])["score"] == 100.0

    q = "Which animal?\nOptions: A: cat, B: dog"
    write(tmp_path / "mmstar/mmstar.parquet", [
        {"index": 0, "question": q, "answer": "B", "category": "c", "image": cell()}])
    s = bench("mmstar").load(str(tmp_path / "mmstar"))
    assert s[0]["prompt"] == q + "\n" + LETTER_ONLY
    assert s[0]["choices"] == {"A": "cat", "B": "dog"}
    assert scored(bench("mmstar"), s, ["(B)"])["score"] == 0.0  # its "(A)" check never fires
    assert scored(bench("mmstar"), s, ["(B)"], "fixed")["score"] == 100.0

    for sub in ("Counting", "IQ_Test", "Object_Localization", "Relative_Depth",
                "Relative_Reflectance", "Spatial_Relation"):
        write(tmp_path / f"blink/{sub}/val-00000-of-00001.parquet", [
            {"idx": f"val_{sub}_1", "prompt": "Which is closer?\n(A) a\n(B) b",
             "choices": ["a", "b"], "answer": "(A)", "image_1": cell(), "image_2": None}])
    s = bench("blink").load(str(tmp_path / "blink"))
    assert len(s) == 6 and s[0]["prompt"] == "Which is closer?\n(A) a\n(B) b\n" + LETTER_ONLY
    assert scored(bench("blink"), s, ["(A) a"] * 6)["score"] == 100.0


def test_errors_name_file_row_and_field(tmp_path):
    write(tmp_path / "data/test-00000-of-00001.parquet", [
        {"question_id": "a", "image": cell(), "question": "Q?", "category": "OCR"}])
    with pytest.raises(DataFormatError, match=r"test-00000-of-00001.parquet:row 0: missing "
                                              r"field 'answer'"):
        bench("mme").load(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ChartQA: no file matching"):
        bench("chartqa").load(str(tmp_path / "nowhere"))
    write(tmp_path / "bad/data/test-00000-of-00001.parquet", [
        {"question_id": "a", "image": {"bytes": b"not an image", "path": None},
         "question": "Q?", "answer": "Yes", "category": "OCR"}])
    with pytest.raises(DataFormatError, match="row 0: image does not decode"):
        bench("mme").load(str(tmp_path / "bad"))
    (tmp_path / "Questions.csv").write_text("Index,Question,Options,Correct Answer\nx,y\n")
    with pytest.raises(DataFormatError, match=r"Questions.csv:line 2"):
        bench("mmvp").load(str(tmp_path))


@pytest.mark.parametrize("name, tokens", [
    ("mme", 32), ("mmbench", 512), ("seed", 512), ("gqa", 128), ("scienceqa", 512),
    ("mmmu", 512), ("mathvista", 512), ("ai2d", 512), ("chartqa", 128), ("ocrbench", 512),
    ("textvqa", 512), ("docvqa", 128), ("mmvp", 512), ("realworldqa", 512), ("cvbench", 512),
    ("vstar", 32), ("pope", 128), ("mmstar", 128), ("blink", 32)])
def test_module_interface(name, tokens):
    module = bench(name)
    assert module.NAME == name and module.MAX_NEW_TOKENS == tokens
    assert module.GROUP in ("general", "knowledge", "ocr_chart", "vision_centric", None)
    assert callable(module.load) and callable(module.score)
