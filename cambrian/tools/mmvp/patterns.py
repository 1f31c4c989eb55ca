"""The nine visual patterns of MMVP (Tong et al., 2024, Sec. 3.1), tagged from keyword rules, and
pair accuracy per pattern.

MMVP grouped its CLIP-blind pairs into nine patterns by reading the questions; the released
``Questions.csv`` carries no pattern column. ``tag(text)`` approximates that reading with the
ordered rules of ``RULES``: the first pattern with a keyword (whole words, case-insensitive) in the
question and option texts wins, else ``UNTAGGED``. The order settles overlaps: "How many red
cars?" is a count, "What colour is the word on the sign?" is text. A pair is tagged from both of
its questions and their options. An annotator's own ``pattern`` (``build``'s provenance file)
overrides the rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from cambrian.eval.benchmarks import mmvp as mmvp_benchmark

UNTAGGED = "untagged"
_COLOURS = ("colou?rs?|colou?red|red|green|blue|yellow|orange|purple|pink|brown|black|white|"
            "grey|gray|golden|silver|beige|shade|tint|hue")

# (pattern, keywords regex), in the order they are tried: specific cues first, the generic
# "does it have" of presence last.
RULES: tuple[tuple[str, str], ...] = (
    ("text", r"text|texts|word|words|written|writing|letters?|says?|spell\w*|label(?:led)?|"
             r"logo|sign says|printed|font|number (?:on|shown|displayed|written)"),
    ("quantity_and_count", r"how many|number of|count|counts|amount|quantity|single|"
                           r"one or two|two or three|multiple|pairs? of"),
    ("color_and_appearance", _COLOURS),
    ("orientation_and_direction", r"facing|faces|face (?:left|right|forward|the)|direction|"
                                  r"pointing|points|point (?:up|down|left|right)|orientation|"
                                  r"oriented|upright|upside|tilted|turned|heading|rotated|"
                                  r"looking (?:left|right|up|down|at)|sideways|horizontal|"
                                  r"towards?|away from|"
                                  r"vertical|clockwise"),
    ("viewpoint_and_perspective", r"view|viewpoint|perspective|angle|camera|photographed|"
                                  r"from (?:above|below|behind|the side|the front)|close-?up|"
                                  r"overhead|aerial|zoomed|shot"),
    ("positional_and_relational_context", r"left of|right of|on the left|on the right|above|"
                                          r"below|under|beneath|behind|in front|next to|"
                                          r"beside|near|between|on top|inside|outside|"
                                          r"position|located|touching"),
    ("state_and_condition", r"open|opened|closed|shut|on or off|turned on|turned off|lit|"
                            r"wet|dry|broken|melting|melted|frozen|empty|full|filled|state|"
                            r"condition|running|standing|sitting|lying|raised|lowered|clean|"
                            r"dirty|ripe|cooked|burning|moving|still|calm|blooming"),
    ("structural_and_physical_characteristics", r"shape|shaped|round|square|rectangular|"
                                                r"circular|pattern|patterned|striped|spotted|"
                                                r"texture|material|made of|structure|size|"
                                                r"long|short|tall|thick|thin|flat|curved|"
                                                r"straight|smooth|rough"),
    ("presence_of_specific_features", r"is there|are there|visible|present|presence|"
                                      r"can you see|does|do|have|has|with|without|wearing|"
                                      r"contain|contains|any"),
)
# MMVP's nine patterns in the paper's order (reports use it)
PATTERNS: tuple[str, ...] = (
    "orientation_and_direction", "presence_of_specific_features", "state_and_condition",
    "quantity_and_count", "positional_and_relational_context", "color_and_appearance",
    "structural_and_physical_characteristics", "text", "viewpoint_and_perspective")
_COMPILED = tuple((name, re.compile(rf"\b(?:{words})\b", re.IGNORECASE)) for name, words in RULES)


def tag(text: str) -> str:
    """The first pattern of ``RULES`` whose keywords occur in ``text``, else ``UNTAGGED``."""
    for name, rx in _COMPILED:
        if rx.search(text):
            return name
    return UNTAGGED


def tag_pair(questions: Sequence[str], options: Sequence[str]) -> str:
    return tag(" ".join([*questions, *options]))


def read_questions(folder: str) -> list[dict]:
    """The benchmark's rows in file order (the suite's own MMVP loader, images included)."""
    return mmvp_benchmark.load(folder)


def pair_patterns(samples: Sequence[Mapping], overrides: Mapping[int, str] | None = None
                  ) -> list[str]:
    """One pattern per consecutive pair of ``samples`` (loader rows: ``prompt``, ``choices``,
    ``index``). ``overrides`` maps a pair's first Index to an annotator's pattern."""
    out = []
    for p in range(len(samples) // 2):
        one, two = samples[2 * p], samples[2 * p + 1]
        if overrides and int(one["index"]) in overrides:
            out.append(overrides[int(one["index"])])
            continue
        qs = [s["prompt"].split(" Options:")[0] for s in (one, two)]
        out.append(tag_pair(qs, [*one["choices"].values(), *two["choices"].values()]))
    return out


def accuracy_by_pattern(records: Sequence[Mapping], pair_tags: Sequence[str],
                        profile: str = "cambrian") -> dict[str, dict]:
    """{pattern: {"pairs", "pair_accuracy" (%), "question_accuracy" (%)}} plus "all", scored by
    the suite's MMVP scorer on each pattern's pairs (kept whole and in order)."""
    if len(records) != 2 * len(pair_tags):
        raise ValueError(f"{len(records)} prediction records for {len(pair_tags)} pairs")
    groups: dict[str, list] = {}
    for p, name in enumerate(pair_tags):
        groups.setdefault(name, []).extend(records[2 * p:2 * p + 2])
    out = {}
    for name in [*PATTERNS, UNTAGGED, *sorted(set(groups) - set(PATTERNS) - {UNTAGGED})]:
        if name in groups:
            s = mmvp_benchmark.score(groups[name], profile)
            out[name] = {"pairs": len(groups[name]) // 2, "pair_accuracy": s["score"],
                         "question_accuracy": s["question_accuracy"]}
    s = mmvp_benchmark.score(list(records), profile)
    out["all"] = {"pairs": len(pair_tags), "pair_accuracy": s["score"],
                  "question_accuracy": s["question_accuracy"]}
    return out


def join_predictions(samples: Sequence[Mapping], predictions: Sequence[Mapping],
                     where: str) -> list[dict]:
    """Prediction records in benchmark order, matched by id; every question needs one."""
    by_id = {str(r["id"]): r for r in predictions}
    missing = [str(s["id"]) for s in samples if str(s["id"]) not in by_id]
    if missing:
        raise ValueError(f"{where}: no prediction for {len(missing)} of {len(samples)} questions "
                         f"(Index {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''});"
                         " finish the eval run (rerun it: it resumes) or pass its predictions")
    return [{**{k: v for k, v in s.items() if k != "image"}, "prediction":
             by_id[str(s["id"])]["prediction"]} for s in samples]


def table(result: Mapping[str, Mapping]) -> str:
    lines = ["| pattern | pairs | pair acc. | question acc. |", "|---|---|---|---|"]
    for name, r in result.items():
        lines.append(f"| {name} | {r['pairs']} | {r['pair_accuracy']:.1f} | "
                     f"{r['question_accuracy']:.1f} |")
    return "\n".join(lines)
