"""Tiny stand-ins of every downloaded benchmark, each in the folder layout that
``huggingface_hub.snapshot_download(repo_id, repo_type="dataset", local_dir=ROOT/<name>)`` leaves:
the repo's own files (data shards of every split, neighbouring configs, README, extra formats) plus
the client's ``.cache/huggingface/`` bookkeeping. Rows follow each repo's published schema; every
question text carries its benchmark's name so a loader that reads a neighbour's file is caught.

File lists are those of the hub repos' file trees (checked when these stand-ins were written):
lmms-lab/MME ``data/test-0000k-of-00004-<hash>.parquet``, lmms-lab/GQA one folder per config,
lmms-lab/DocVQA ``DocVQA/`` beside ``InfographicVQA/``, lmms-lab/POPE ``data/`` beside ``Full/``,
nyu-visionx/CV-Bench ``test_2d.parquet`` + ``test_3d.parquet`` + ``img/``, MMVP/MMVP
``Questions.csv`` + ``MMVP Images/``, craigwu/vstar_bench ``test_questions.jsonl`` + image folders,
BLINK-Benchmark/BLINK one folder per subtask.
"""

from __future__ import annotations

import io
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

ROWS = 2  # rows per benchmark split read by the loaders
DECOY = "decoy"  # in the text of every row a loader must not read (other splits and configs)
BLINK_ALL = ("Art_Style", "Counting", "Forensic_Detection", "Functional_Correspondence",
             "IQ_Test", "Jigsaw", "Multi-view_Reasoning", "Object_Localization",
             "Relative_Depth", "Relative_Reflectance", "Semantic_Correspondence",
             "Spatial_Relation", "Visual_Correspondence", "Visual_Similarity")


def png(color=(200, 30, 30), size=(4, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def cell(name: str = "img.png") -> dict:
    return {"bytes": png(), "path": name}


class Snapshot:
    """One benchmark folder being written, with the hub client's per-file metadata."""

    def __init__(self, root: str, name: str):
        self.dir = os.path.join(root, name)
        os.makedirs(os.path.join(self.dir, ".cache", "huggingface", "download"), exist_ok=True)
        with open(os.path.join(self.dir, ".cache", "huggingface", ".gitignore"), "w") as f:
            f.write("*\n")
        self.text(".gitattributes", "*.parquet filter=lfs diff=lfs merge=lfs -text\n")
        self.text("README.md", f"---\nlicense: other\n---\n# {name}\n")

    def _meta(self, rel: str) -> None:
        meta = os.path.join(self.dir, ".cache", "huggingface", "download", rel + ".metadata")
        os.makedirs(os.path.dirname(meta), exist_ok=True)
        with open(meta, "w") as f:
            f.write("0123456789abcdef\netag\n1700000000.0\n")

    def bytes(self, rel: str, data: bytes) -> None:
        path = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        self._meta(rel)

    def text(self, rel: str, text: str) -> None:
        self.bytes(rel, text.encode())

    def parquet(self, rel: str, rows: list[dict]) -> None:
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buf)
        self.bytes(rel, buf.getvalue())


def _mme(s: Snapshot) -> None:
    rows = [{"question_id": "existence/1.png", "image": cell(), "question":
             f"mme question {i}? Please answer yes or no.", "answer": ("Yes", "No")[i % 2],
             "category": "existence"} for i in range(ROWS)]
    s.parquet("data/test-00000-of-00002-a25dbe3b44c4fda6.parquet", rows[:1])
    s.parquet("data/test-00001-of-00002-7d22c7f1aba6fca4.parquet", rows[1:])


def _mmbench(s: Snapshot) -> None:
    def row(i, split, answer):
        return {"index": i, "question": f"mmbench {'' if split == 'dev' else DECOY} question {i}?",
                "hint": "nan", "A": "red",
                "B": "green", "C": "nan", "D": "nan", "answer": answer, "category": "c",
                "image": cell(), "source": "s", "l2-category": "l2", "comment": "nan",
                "split": split}
    s.parquet("data/dev-00000-of-00001-75b6649fb044d38b.parquet",
              [row(i, "dev", "A") for i in range(ROWS)])
    s.parquet("data/test-00000-of-00001-f74a6f1f762e33f2.parquet",
              [row(100 + i, "test", None) for i in range(ROWS)])


def _seed(s: Snapshot) -> None:
    s.parquet("data/test-00000-of-00001.parquet", [
        {"answer": "A", "choice_a": "1", "choice_b": "2", "choice_c": "3", "choice_d": "4",
         "data_id": f"{i}.png", "data_type": "image", "question": f"seed question {i}?",
         "question_id": str(i), "question_type_id": 5, "image": [cell()], "segment": None}
        for i in range(ROWS)])


def _gqa(s: Snapshot) -> None:
    def questions(prefix, tag=""):
        return [{"id": f"{prefix}{i}", "imageId": f"n{i}", "question": f"gqa {tag}question {i}?",
                 "answer": "table", "fullAnswer": "It is a table.", "isBalanced": True}
                for i in range(ROWS)]
    s.parquet("testdev_balanced_instructions/testdev-00000-of-00001.parquet", questions("q"))
    s.parquet("testdev_balanced_images/testdev-00000-of-00001.parquet",
              [{"id": f"n{i}", "image": cell()} for i in range(ROWS)])
    s.parquet("testdev_all_instructions/testdev-00000-of-00001.parquet",
              questions("all", DECOY))
    s.parquet("train_balanced_instructions/train-00000-of-00001.parquet", questions("tr", DECOY))


def _scienceqa(s: Snapshot) -> None:
    def rows(tag):
        return [{"image": cell(), "question": f"scienceqa {tag} question {i}?",
                 "choices": ["frog", "dog"], "answer": 1, "hint": "", "task": "closed choice",
                 "grade": "grade2", "subject": "natural science", "topic": "biology",
                 "category": "c", "skill": "s", "lecture": "", "solution": ""}
                for i in range(ROWS)]
    s.parquet("data/test-00000-of-00001-f0e719df791966ff.parquet", rows("test"))
    s.parquet("data/train-00000-of-00001-1028f23e353fbe3e.parquet", rows(DECOY))
    s.parquet("data/validation-00000-of-00001-6c7328ff6c84284c.parquet", rows(DECOY))


def _mmmu(s: Snapshot) -> None:
    def rows(split):
        return [{"id": f"{split}_Physics_{i}", "question":
                 f"mmmu {'' if split == 'validation' else DECOY} question {i}?",
                 "options": "['3 m', '4 m']", "explanation": "", "image_1": cell(),
                 "image_2": None, "img_type": "['Diagrams']", "answer": "B",
                 "topic_difficulty": "Easy", "question_type": "multiple-choice",
                 "subfield": "Mechanics"} for i in range(ROWS)]
    for split in ("dev", "validation", "test"):
        s.parquet(f"data/{split}-00000-of-00001.parquet", rows(split))


def _mathvista(s: Snapshot) -> None:
    def rows(tag):
        return [{"pid": str(i + 1), "question": "Which?", "image": f"images/{i + 1}.jpg",
                 "decoded_image": cell(), "choices": ["1", "2"], "unit": None,
                 "precision": None, "answer": "2", "question_type": "multi_choice",
                 "answer_type": "text", "metadata": {"category": "math-targeted-vqa"},
                 "query": f"mathvista {tag} question {i}\nChoices:\n(A) 1\n(B) 2"}
                for i in range(ROWS)]
    s.parquet("data/testmini-00000-of-00001-725687bf7a18d64b.parquet", rows("testmini"))
    s.parquet("data/test-00000-of-00002-6b81bd7f7e2065e6.parquet", rows(DECOY))
    s.text("annot_testmini.json", "{}")
    s.text("source.json", "{}")


def _ai2d(s: Snapshot) -> None:
    s.parquet("data/test-00000-of-00001.parquet", [
        {"question": f"ai2d question {i}?", "options": ["egg", "larva"], "answer": "1",
         "image": cell()} for i in range(ROWS)])


def _chartqa(s: Snapshot) -> None:
    s.parquet("data/test-00000-of-00001.parquet", [
        {"type": "human_test", "question": f"chartqa question {i}?", "answer": "50",
         "image": cell()} for i in range(ROWS)])


def _ocrbench(s: Snapshot) -> None:
    s.parquet("data/test-00000-of-00001.parquet", [
        {"dataset": "IIIT5K", "question": f"ocrbench question {i}?",
         "question_type": "Regular Text Recognition", "answer": ["hello"], "image": cell()}
        for i in range(ROWS)])


def _textvqa(s: Snapshot) -> None:
    def rows(split):
        return [{"image_id": f"{split}{i}", "question_id": i, "question":
                 f"textvqa {'' if split == 'validation' else DECOY} question {i}?",
                 "question_tokens": ["what"], "image": cell(),
                 "image_width": 4, "image_height": 3, "answers": ["nike"] * 10,
                 "ocr_tokens": ["NIKE"], "set_name": split} for i in range(ROWS)]
    for split in ("train", "validation", "test"):
        s.parquet(f"data/{split}-00000-of-00001.parquet", rows(split))


def _docvqa(s: Snapshot) -> None:
    def rows(config, split):
        read = config == "DocVQA" and split == "validation"
        return [{"questionId": f"{config}{split}{i}",
                 "question": f"docvqa {'' if read else DECOY} question {i}?",
                 "question_types": ["free_text"], "image": cell(), "docId": i,
                 "ucsf_document_id": "x", "ucsf_document_page_no": "1",
                 "answers": ["1 May"] if split != "test" else None, "data_split": split}
                for i in range(ROWS)]
    for config in ("DocVQA", "InfographicVQA"):
        for split in ("validation", "test"):
            s.parquet(f"{config}/{split}-00000-of-00001.parquet", rows(config, split))


def _mmvp(s: Snapshot) -> None:
    lines = ["Index,Question,Options,Correct Answer"]
    for i in range(1, ROWS + 1):
        lines.append(f"{i},mmvp question {i}?,(a) Open (b) Closed,(a)")
        s.bytes(f"MMVP Images/{i}.jpg", png())
    s.text("Questions.csv", "\n".join(lines) + "\n")
    s.bytes("Questions.xlsx", b"PK\x03\x04 not read")


def _realworldqa(s: Snapshot) -> None:
    rows = [{"image": cell(), "question": f"realworldqa question {i}?\nA. left\nB. right\n"
             "Please answer directly with only the letter of the correct option.",
             "answer": "B"} for i in range(ROWS)]
    s.parquet("data/test-00000-of-00002.parquet", rows[:1])
    s.parquet("data/test-00001-of-00002.parquet", rows[1:])


def _cvbench(s: Snapshot) -> None:
    def rows(kind, source, start):
        return [{"idx": start + i, "type": kind, "task": "Count", "source": source,
                 "prompt": f"cvbench {kind} question {i}?\n(A) 1\n(B) 2",
                 "choices": ["1", "2"], "answer": "(A)", "image": cell(),
                 "filename": f"img/{kind}/count/{start + i}.png", "source_dataset": source,
                 "source_filename": "x.jpg", "target_class": None, "target_size": None,
                 "bbox": None} for i in range(ROWS)]
    for kind, source, start in (("2D", "ADE20K", 0), ("3D", "Omni3D", 100)):
        rs = rows(kind, source, start)
        s.parquet(f"test_{kind.lower()}.parquet", rs)
        s.text(f"test_{kind.lower()}.jsonl", "".join(
            json.dumps({k: v for k, v in r.items() if k != "image"}) + "\n" for r in rs))
        for r in rs:
            s.bytes(r["filename"], png())
    s.text("build_img.py", "# rebuilds img/ from the parquet files\n")


def _vstar(s: Snapshot) -> None:
    lines = []
    for i, cat in enumerate(("direct_attributes", "relative_position")):
        s.bytes(f"{cat}/sa_{i}.jpg", png())
        s.text(f"{cat}/sa_{i}.json", "{}")
        lines.append(json.dumps({
            "image": f"{cat}/sa_{i}.jpg", "text": f"vstar question {i}? (A) red (B) blue\n"
            "Answer with the option's letter from the given choices directly.",
            "category": cat, "question_id": i, "label": "A"}))
    s.bytes("OCR/0.jpg", png())
    s.text("GPT4V-hard/0.json", "{}")
    s.text("test_questions.jsonl", "\n".join(lines) + "\n")


def _pope(s: Snapshot) -> None:
    def rows(tag):
        return [{"id": str(i), "question_id": f"{tag}{i}", "question":
                 f"pope {tag} question {i}: is there a cat in the image?", "answer": "no",
                 "image_source": "COCO_val2014_0.jpg", "image": cell(), "category": "random"}
                for i in range(ROWS)]
    s.parquet("data/test-00000-of-00001.parquet", rows("test"))
    for split in ("adversarial", "popular", "random"):
        s.parquet(f"Full/{split}-00000-of-00001.parquet", rows(f"{split} {DECOY}"))


def _mmstar(s: Snapshot) -> None:
    s.parquet("mmstar.parquet", [
        {"index": i, "question": f"mmstar question {i}?\nOptions: A: cat, B: dog",
         "image": cell(), "answer": "B", "category": "c", "l2_category": "l2",
         "meta_info": {"source": "s", "split": "val", "image_path": "x.png"}}
        for i in range(ROWS)])
    s.text("MMStar.tsv", "index\tquestion\tanswer\n0\tnot read\tA\n")


def _blink(s: Snapshot) -> None:
    for sub in BLINK_ALL:
        for split in ("val", "test"):
            s.parquet(f"{sub}/{split}-00000-of-00001.parquet", [
                {"idx": f"{split}_{sub}_{i}", "question": "Which is closer?", "sub_task": sub,
                 "image_1": cell(), "image_2": None, "image_3": None, "image_4": None,
                 "choices": ["a", "b"], "answer": "(A)" if split == "val" else "?",
                 "prompt": f"blink {'' if split == 'val' else DECOY} question {i}?\n(A) a\n"
                 "(B) b", "explanation": ""}
                for i in range(ROWS)])


WRITERS = {"mme": _mme, "mmbench": _mmbench, "seed": _seed, "gqa": _gqa,
           "scienceqa": _scienceqa, "mmmu": _mmmu, "mathvista": _mathvista, "ai2d": _ai2d,
           "chartqa": _chartqa, "ocrbench": _ocrbench, "textvqa": _textvqa, "docvqa": _docvqa,
           "mmvp": _mmvp, "realworldqa": _realworldqa, "cvbench": _cvbench, "vstar": _vstar,
           "pope": _pope, "mmstar": _mmstar, "blink": _blink}
# Items each loader must return from its folder: ScienceQA only image questions, BLINK the six
# subtasks Cambrian runs, CV-Bench both files.
EXPECTED = {**{n: ROWS for n in WRITERS}, "blink": 6 * ROWS, "cvbench": 2 * ROWS}


def write_all(root: str, names=None) -> str:
    """Every benchmark (or ``names``) side by side under ``root``; returns ``root``."""
    for name in names or WRITERS:
        WRITERS[name](Snapshot(root, name))
    return root
