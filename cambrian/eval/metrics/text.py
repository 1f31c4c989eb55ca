"""Answer normalisers shared by several scorers, each written to match its harness exactly."""

from __future__ import annotations

import re
import string

# The EvalAI / VQA contraction table (identical in MMF, lmms-eval and VLMEvalKit). Keys with
# capitals can never match because the text is lower-cased first; kept as published.
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
NUMBER_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
              "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ("a", "an", "the")
PUNCTUATIONS = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
                "@", "`", ",", "?", "!")

# MMF's regex has a typo ("(?!<=" instead of "(?<!"), so a period after a digit is deleted too;
# it is passed as re.sub's *count* (re.UNICODE == 32), capping the deletions at 32.
_MMF_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_MMF_COMMA = re.compile(r"(?<=\d)(\,)+(?=\d)")
# VLMEvalKit fixed the look-behind; its comma rule is digit-comma-digit.
_VLMEVALKIT_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")
_VLMEVALKIT_COMMA = re.compile(r"(\d)(,)(\d)")


def _punctuation(text: str, comma: re.Pattern, period: re.Pattern) -> str:
    out = text
    for p in PUNCTUATIONS:
        # The "next to a space" test reads the *input* text, not the partly cleaned one.
        if (p + " " in text or " " + p in text) or comma.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return period.sub("", out, count=int(re.UNICODE))


def digit_article(text: str) -> str:
    """Lower-case, map number words, drop articles, restore contractions (VQA eval step)."""
    words = [NUMBER_MAP.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def evalai_answer(text: str) -> str:
    """MMF ``EvalAIAnswerProcessor`` (used by Cambrian's m4c evaluator and lmms-eval)."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return digit_article(_punctuation(text, _MMF_COMMA, _MMF_PERIOD))


def vlmevalkit_punctuation(text: str) -> str:
    """VLMEvalKit ``process_punctuation``."""
    return _punctuation(text, _VLMEVALKIT_COMMA, _VLMEVALKIT_PERIOD)


def vlmevalkit_answer(text: str) -> str:
    """VLMEvalKit ``process_answer`` (TextVQA default path): no comma/'s pre-pass."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return digit_article(vlmevalkit_punctuation(text))


def lmms_eval_until(text: str, until: tuple[str, ...] = ("ASSISTANT:",)) -> str:
    """The generation as lmms-eval hands it to a task whose ``generation_kwargs.until`` lists
    ``until`` (textvqa, seedbench):
    EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/models/simple/cambrian.py: generate_until strips
    the text and cuts it at each stop string (special tokens are already skipped, so its own
    "<|eot_id|>" never occurs)."""
    text = text.strip()
    for term in until:
        text = text.split(term)[0]
    return text


def levenshtein(a: str, b: str) -> int:
    if len(a) > len(b):
        a, b = b, a
    prev = list(range(len(a) + 1))
    for i, cb in enumerate(b):
        cur = [i + 1]
        for j, ca in enumerate(a):
            cur.append(prev[j] if ca == cb else 1 + min(prev[j], prev[j + 1], cur[-1]))
        prev = cur
    return prev[-1]


def is_number(text: str) -> bool:
    """Whether Python's ``float()`` accepts ``text`` (so "1e3", " 12 ", "nan", "1_000" do)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def strip_each(text: str, chars: str) -> str:
    """``for c in chars: text = text.strip(c)`` -- one character at a time, as the harnesses do."""
    for c in chars:
        text = text.strip(c)
    return text


_NO_PUNCT = str.maketrans("", "", string.punctuation)


def hf_exact_match(prediction: str, reference: str, ignore_case: bool = True,
                   ignore_punctuation: bool = True) -> bool:
    """EvolvingLMMs-Lab/lmms-eval@75571cf:lmms_eval/api/metrics.py:exact_match_hf_evaluate as
    lmms-eval calls it (no regexes, numbers kept). Its numpy string arrays drop trailing NUL
    characters."""
    prediction, reference = prediction.rstrip("\0"), reference.rstrip("\0")
    if ignore_case:
        prediction, reference = prediction.lower(), reference.lower()
    if ignore_punctuation:
        prediction, reference = prediction.translate(_NO_PUNCT), reference.translate(_NO_PUNCT)
    return prediction == reference
