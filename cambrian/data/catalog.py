"""Source tables of published instruction-tuning data, for recipes to pick from.

``llava_665k(...)`` splits LLaVA-1.5's ``llava_v1_5_mix665k.json`` by image folder.
``cambrian_10m(...)`` splits Cambrian-10M's ``jsons/Cambrian10M.jsonl``: each record names its
original file in ``source`` and its image folder in the first component of ``image``
(``hfdata/<name>`` for the Idefics-derived sets). The table below was derived from those two fields
as a public split script of the file uses them; it is not an official list. Records no entry claims
are counted per (source, folder) under ``unassigned`` in the build manifest, so gaps show up there.
Not in the table: WikiSQL and VQAv2 (their tags are not known here) and GPT-4o-60K (a separate
file, ``jsons/gpt4o_60k.jsonl``).

Answer-format prompts follow Cambrian-1 §5.3; multiple-choice questions get the letter prompts
where the paper pairs two prompts with one source.
"""

from __future__ import annotations

import dataclasses

from cambrian.data import prompts as P
from cambrian.data.prompts import PromptRule
from cambrian.data.recipe import Source

SHORT = (PromptRule(P.SHORT_ANSWER),)
SHORT_OR_OPTION = (PromptRule(P.SHORT_ANSWER, when="open"),
                   PromptRule(P.OPTION_LETTER, when="multiple_choice"))
SHORT_OR_LETTER = (PromptRule(P.SHORT_ANSWER, when="open"),
                   PromptRule(P.LETTER, when="multiple_choice"))


def llava_665k(annotations: str, images: str) -> tuple[Source, ...]:
    """LLaVA-1.5 665K, one source per image folder plus the text-only ShareGPT part. The file
    already carries LLaVA's short-answer prompts, so no rules are added."""
    folders = (("coco", "general"), ("gqa", "general"), ("vg", "general"), ("ocr_vqa", "ocr"),
               ("textvqa", "ocr"))
    return tuple(Source(f"llava_{f}", annotations, cat, images=images, image_prefix=f + "/")
                 for f, cat in folders) + (
        Source("llava_sharegpt", annotations, "language", has_image=False),)


# name, category, source field, image folder (None: text-only), §5.3 prompt rules
_CAMBRIAN_10M = (
    # OCR
    ("dvqa", "ocr", "dvqa_2325k.json", "dvqa", SHORT),
    ("synthdog", "ocr", "synthdog_500k_modified.json", "synthdog", ()),
    ("arxivqa", "ocr", "arxivqa_100k.json", "arxivqa", ()),
    ("ocr_vqa", "ocr", "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json", "ocr_vqa", ()),
    ("screenqa", "ocr", "screenqa_79k.json", "screen_qa",
     (PromptRule(P.NO_ANSWER), PromptRule(P.SHORT_ANSWER))),
    ("docvqa", "ocr", "docvqa_39k.json", "docvqa", (PromptRule(P.SHORT_DIRECT),)),
    ("wtq", "ocr", "idefics375k.json", "hfdata/robut_wtq", SHORT),
    ("chartqa", "ocr", "chartqa_28k.json", "chartqa", (PromptRule(P.SHORT_NUMBER),)),
    ("iconqa", "ocr", "idefics375k.json", "hfdata/iconqa", SHORT_OR_LETTER),
    ("chart2text", "ocr", "idefics375k.json", "hfdata/chart2text", ()),
    ("tabmwp", "ocr", "idefics375k.json", "hfdata/tabmwp", ()),
    ("textcaps", "ocr", "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json", "textvqa",
     ()),
    ("llavar", "ocr", "clean_llava_instruct_150k_llavar_20k.json", "llavar", ()),
    ("st_vqa", "ocr", "idefics375k.json", "hfdata/st_vqa", ()),
    ("ai2d", "ocr", "ai2d_15k.json", "ai2d", SHORT),
    ("rendered_text", "ocr", "idefics375k.json", "hfdata/rendered_text", ()),
    ("vistext", "ocr", "idefics375k.json", "hfdata/vistext", ()),
    ("finqa", "ocr", "idefics375k.json", "hfdata/finqa", ()),
    ("infographic_vqa", "ocr", "idefics375k.json", "hfdata/infographic_vqa", ()),
    ("tat_qa", "ocr", "idefics375k.json", "hfdata/tat_qa", ()),
    ("hitab", "ocr", "idefics375k.json", "hfdata/hitab", SHORT),
    # general
    ("allava_laion", "general", "allava-laion-500k.json", "allava", ()),
    ("allava_vflan", "general", "allava-vflan-200k.json", "allava", ()),
    ("q_instruct", "general", "q-instruct_200k.json", "Q-Instruct-DB", SHORT_OR_OPTION),
    ("q_align", "general", "qalign_200k.json", "Q-Instruct-DB", SHORT_OR_OPTION),
    ("lnqa", "general", "lnqa_302k.json", "lnqa", ()),
    ("lvis_instruct4v", "general", "lvis_instruct4v_220k.json", "coco", ()),
    ("vg", "general", "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json", "vg", ()),
    ("gpt4v_rewritten_77k", "general", "gpt77k.json", "", ()),
    ("gqa", "general", "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json", "gqa", ()),
    ("alfworld", "general", "alfworldgpt_45k.json", "alfworld", ()),
    ("vizwiz", "general", "vizwiz_20k.json", "vizwiz", (PromptRule(P.UNANSWERABLE),)),
    ("visual7w", "general", "idefics375k.json", "hfdata/visual7w",
     (PromptRule(P.OPTION_LETTER),)),
    ("laion_gpt4v", "general", "laion_gpt4v_11k.json", "gpt4v-dataset", ()),
    ("idk", "general", "idk_11k.json", "idk", ()),
    ("hateful_memes", "general", "idefics375k.json", "hfdata/hateful_memes", ()),
    ("oodvqa", "general", "oodvqa_8k.json", "oodvqa", SHORT),
    ("sketchyvqa", "general", "sketchyvqa_8k.json", "oodvqa", SHORT),
    ("visualmrc", "general", "idefics375k.json", "hfdata/visualmrc", ()),
    # language
    ("openorca", "language", "orca_994k.json", None, ()),
    ("mathinstruct", "language", "mathinstruct_262k.json", None, (PromptRule(P.REASONING),)),
    ("orca_math", "language", "orca_math_200k.json", None, ()),
    ("wizardlm", "language", "wizardlm_143k.json", None, ()),
    ("code_feedback", "language", "code_feedback_66k.json", None, ()),
    ("dolly", "language", "dolly_15k.json", None, ()),
    # counting
    ("clevr", "counting", "clevr_700k.json", "clevr", SHORT),
    ("tallyqa", "counting", "tallyqa_250k.json", "tallyqa", SHORT),
    # code
    ("websight", "code", "websight_800k.json", "websight", ()),
    ("datikz", "code", "idefics375k.json", "hfdata/datikz", ()),
    ("design2code", "code", "design2code_0k.json", "design2code", (PromptRule(P.HTML_CODE),)),
    # math
    ("geo170k", "math", "geo170k.json", "geo170k", ()),
    ("raven", "math", "idefics375k.json", "hfdata/raven", SHORT),
    ("geomverse", "math", "idefics375k.json", "hfdata/geomverse", ()),
    ("mathvision", "math", "mathvision_3k.json", "mathvision", ()),
    ("intergps", "math", "idefics375k.json", "hfdata/intergps", (PromptRule(P.LETTER),)),
    ("tqa", "math", "idefics375k.json", "hfdata/tqa", (PromptRule(P.LETTER),)),
    # science
    ("data_engine", "science", "filtered_data_engine_161k.json", "data_engine", ()),
    ("pathvqa", "science", "pathvqa_32k.json", "pathvqa", SHORT),
    ("scienceqa", "science", "scienceqa_12k.json", "", ()),
)


def cambrian_10m(root: str, with_prompts: bool = True) -> tuple[Source, ...]:
    """Cambrian-10M split into named sources (see the module docstring). ``root`` is the
    downloaded dataset folder with the tars extracted (``jsons/``, ``coco/``, ``dvqa/``, ...)."""
    out = []
    for name, cat, field, folder, rules in _CAMBRIAN_10M:
        # "" = any image folder or none; None = text-only records
        prefix = (folder + "/",) if folder else ()
        out.append(Source(name, f"{root}/jsons/Cambrian10M.jsonl", cat, images=root,
                          match=field, image_prefix=prefix,
                          has_image=False if folder is None else None,
                          prompts=rules if with_prompts else ()))
    return tuple(out)


def replace(sources: tuple[Source, ...], **changes: dict) -> tuple[Source, ...]:
    """Sources with per-name field changes: ``replace(s, dvqa={"remove": 1_550_000})``."""
    names = {s.name for s in sources}
    if unknown := sorted(set(changes) - names):
        raise KeyError(f"no source named {unknown}; known: {sorted(names)}")
    return tuple(dataclasses.replace(s, **changes.get(s.name, {})) for s in sources)
