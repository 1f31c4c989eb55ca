"""Scorer behaviours stated in scoring.md (§2-§5) that the public case file does not cover.

Each expected value is derived by hand from the harness behaviour the reference describes.
"""

from __future__ import annotations

import re

import pytest

from cambrian.eval import metrics

TEN = 10
ABCD = {"A": "red", "B": "green", "C": "blue", "D": "yellow"}


def score(name, harness, variant=None, **fields):
    return metrics.scorer(name, harness, variant)(**fields)


@pytest.mark.parametrize("pred, cb, vk", [("5.", 1.0, 0.0), ("5...", 1.0, 0.0)])
def test_textvqa_period_after_digit(pred, cb, vk):
    # §3.1 / §3.3: MMF deletes every "." not followed by a digit; VLMEvalKit keeps one after one.
    refs = ["5"] * TEN
    assert score("vqa_accuracy", "cambrian", prediction=pred, references=refs) == cb
    assert score("vqa_accuracy", "lmms-eval", prediction=pred, references=refs) == cb
    assert score("vqa_accuracy", "vlmevalkit", prediction=pred, references=refs) == vk


def test_textvqa_four_matches_and_answer_count():
    refs = ["nike"] * 4 + ["adidas"] * 6
    assert score("vqa_accuracy", "cambrian", prediction="nike", references=refs) == 1.0
    with pytest.raises(metrics.HarnessError):  # m4c asserts exactly 10 answers
        score("vqa_accuracy", "cambrian", prediction="nike", references=refs[:9])
    assert score("vqa_accuracy", "fixed", prediction="nike", references=refs[:9]) == \
        pytest.approx(1.0)


def test_anls_raw_length_denominator():
    # §4: "  " vs "a": LE (stripped) 0, VK 0.5; "ß".upper() == "SS" doubles the length.
    assert score("anls", "lmms-eval", prediction="  ", references=["a"]) == 0.0
    assert score("anls", "vlmevalkit", prediction="  ", references=["a"]) == 0.5
    assert score("anls", "lmms-eval", prediction="", references=[""]) == 1.0
    assert score("anls", "lmms-eval", prediction="s", references=["ß"]) == 0.5
    assert score("anls", "fixed", prediction="s", references=["ß"]) == 0.0


@pytest.mark.parametrize("pred, gold, cb, le", [
    ("0.5", "50%", 0.0, 1.0), ("100%", "1", 0.0, 1.0), ("0.0", "0", 1.0, 0.0),
    ("1,000", "1000", 0.0, 0.0), ("nan", "nan", 0.0, 0.0), ("1_000", "1000", 1.0, 1.0)])
def test_chartqa_relaxed(pred, gold, cb, le):
    assert score("chartqa_relaxed", "cambrian", prediction=pred, references=[gold]) == cb
    assert score("chartqa_relaxed", "lmms-eval", prediction=pred, references=[gold]) == le
    assert score("chartqa_relaxed", "vlmevalkit", prediction=pred, references=[gold]) == le


@pytest.mark.parametrize("pred, gold, cb, le, vk", [
    ("(yes)", "yes", 0.0, 1.0, 0.0), ("Yes.", "yes", 1.0, 1.0, 0.0),
    ("tshirt", "t-shirt", 0.0, 1.0, 0.0), ("'yes'", "yes", 0.0, 1.0, 0.0)])
def test_gqa_normalisation(pred, gold, cb, le, vk):
    for harness, want in (("cambrian", cb), ("lmms-eval", le), ("vlmevalkit", vk)):
        assert score("gqa_exact", harness, prediction=pred, references=[gold]) == want, harness


def test_ocrbench_fullwidth_and_hme_case():
    regular = "Regular Text Recognition"
    hme = "Handwritten Mathematical Expression Recognition"
    kw = dict(prediction="ＨＥＬＬＯ", references=["hello"], category=regular)
    assert score("ocrbench", "lmms-eval", **kw) == 1.0
    assert score("ocrbench", "cambrian", **kw) == 0.0
    assert score("ocrbench", "vlmevalkit", **kw) == 0.0
    for harness in ("cambrian", "lmms-eval", "vlmevalkit"):
        assert score("ocrbench", harness, prediction="P", references=["p"], category=hme) == 0.0
    assert score("ocrbench", "lmms-eval", prediction="P", references=["p"], category=regular,
                 dataset="HME100k") == 0.0


@pytest.mark.parametrize("harness, variant, pred, want", [
    ("cambrian", "realworldqa", "", "error"),   # split()[0] of an empty answer
    ("cambrian", "realworldqa", "B)", 0.0),
    ("fixed", "realworldqa", "B)", 1.0),
    ("fixed", "realworldqa", "", 0.0),
    ("lmms-eval", "realworldqa", "b", 0.0),     # upper-case letters only
    ("vlmevalkit", "ImageMCQDataset(exact_matching)", "b", 0.0),
    ("lmms-eval", "cv_bench", "The answer is B", 0.0),  # reads "T"
    ("lmms-eval", "vstar_bench", "Bicycle", 1.0),        # upper-cased, starts with B
    ("lmms-eval", "mmmu_val", "**B**", None),             # random fallback
    ("lmms-eval", "mmmu_val", "B)", None),
    ("cambrian", "mathvista (multi_choice)", "B.", 0.0),
    ("fixed", "mathvista", "B.", 1.0),
    ("lmms-eval", "seedbench", "blue", 1.0),
    ("cambrian", "seed", "b) green", 1.0),
    ("lmms-eval", "mmbench_en_dev_static", "**B**", 1.0),  # can_infer fails, extractor reads B
])
def test_mcq_extractors(harness, variant, pred, want):
    fn = metrics.scorer("mcq_letter", harness, variant)
    if want == "error":
        with pytest.raises(metrics.HarnessError):
            fn(prediction=pred, choices=ABCD, answer="B")
    else:
        assert fn(prediction=pred, choices=ABCD, answer="B") == want


def test_ai2d_answer_is_an_option_index():
    # Cambrian maps the extracted letter a-d to 0-3 and compares with the gold index.
    fn = metrics.scorer("mcq_letter", "cambrian", "ai2d")
    assert fn(prediction="B", choices=ABCD, answer="1") == 1.0
    assert fn(prediction="1", choices=ABCD, answer="B") == 1.0


@pytest.mark.parametrize("pred, le, vk", [
    ("Not really", "no", "Unknown"), ("Nope", "no", "Unknown"), ("Y", "yes", "Unknown"),
    ("Yes and no", "yes", "Unknown"), ("The answer is yes.", "other", "Yes")])
def test_mme_yes_no_readings(pred, le, vk):
    from cambrian.eval.metrics import mme_pair

    assert mme_pair.lmms_eval_yes_no(pred) == le
    assert mme_pair.vlmevalkit_yes_no(pred) == vk


def test_mme_interleaved_pairs():
    # Lines: img1-q1 right, img2-q1 right, img1-q2 wrong, img2-q2 wrong. Cambrian's parity
    # counter sees lines 0-1 as a pair (both right): acc 50 + acc+ 50 = 100. Grouping by image:
    # each image has one right answer: acc 50 + acc+ 0 = 50.
    items = [{"question_id": "1.jpg", "prediction": "Yes", "answer": "Yes"},
             {"question_id": "2.jpg", "prediction": "Yes", "answer": "Yes"},
             {"question_id": "1.jpg", "prediction": "Yes", "answer": "No"},
             {"question_id": "2.jpg", "prediction": "Yes", "answer": "No"}]
    kw = dict(items=items, category="existence")
    assert score("mme_pair", "cambrian", **kw) == pytest.approx(100.0)
    for harness in ("lmms-eval", "vlmevalkit", "fixed"):
        assert score("mme_pair", harness, **kw) == pytest.approx(50.0), harness
    with pytest.raises(metrics.HarnessError):  # lmms-eval asserts two answers per question_id
        score("mme_pair", "lmms-eval", items=items[:3], category="existence")


def test_mmmu_open_tolerance_direction():
    # Cambrian: |gt - pred| <= 5 % of the prediction (95: 4.75 < 5 -> wrong); fixed: of the gold.
    assert score("mmmu_open", "cambrian", prediction="95", references=["100"]) == 0.0
    assert score("mmmu_open", "fixed", prediction="95", references=["100"]) == 1.0
    assert score("mmmu_open", "cambrian", prediction="The answer is 105.", references=["100"]) \
        == 1.0


def test_mmvp_pairs():
    kw = dict(references=["A", "B"], options=["open", "closed"])
    assert score("mmvp_pair", "lmms-eval", predictions=["I think a", "B"], **kw) == 1.0
    assert score("mmvp_pair", "cambrian", predictions=["A. open", "B"], **kw) == 0.0
    assert score("mmvp_pair", "cambrian", predictions=["(a)", "The answer is (b)."], **kw) == 1.0
    four = dict(references=["A", "B", "A", "B"], options="(a) open (b) closed")
    assert score("mmvp_pair", "cambrian", predictions=["B", "B", "A", "B"], **four) == 0.5


@pytest.mark.parametrize("name", ["vqa_accuracy", "anls", "chartqa_relaxed", "gqa_exact",
                                  "ocrbench", "mme_pair", "mmvp_pair", "mmmu_open"])
def test_every_scorer_has_all_profiles(name):
    for harness in metrics.HARNESSES:
        assert callable(metrics.scorer(name, harness))


_CITATION = r"@[0-9a-f]{7}:[\w./-]+\.py:\w+"


def test_every_scorer_cites_its_pinned_harness_code():
    """Each scoring function names the code it reproduces as repo@commit:path:function, at its
    profile's pin; a "fixed" function either is Cambrian's own or says what it corrects."""
    def unwrapped(fn):
        return getattr(fn, "__wrapped__", fn)

    cambrian_fns = {unwrapped(metrics.scorer(n, "cambrian", v))
                    for (n, h), vs in metrics.available().items() if h == "cambrian" for v in vs}
    for (name, harness), variants in metrics.available().items():
        pin = metrics.PINS[harness].short
        for variant in variants:
            fn = metrics.scorer(name, harness, variant)
            doc = re.sub(r"\s*\n\s*", "", fn.__doc__ or "")  # citations may wrap across lines
            assert re.search(re.escape(pin.split("@")[0]) + _CITATION, doc), (
                f"{name}/{harness}/{variant}: no repo@commit:path:function citation in "
                f"{fn.__doc__!r}")
            assert pin in doc, f"{name}/{harness}/{variant} cites another commit than {pin}"
            if harness == "fixed" and unwrapped(fn) not in cambrian_fns:
                assert "Corrects" in doc or "unchanged" in doc, (name, variant, doc)
