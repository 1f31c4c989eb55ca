"""Tiny stand-ins of every Hub repo the DINOv2 encoder probe reads, in the repos' real layouts, for
the fake Hub (``tests/fakes/hf_hub.py``): the walk of the user's command downloads them with
``python -m cambrian.fetch`` and trains on them.

File lists follow the repos' file trees (checked on the Hub pages when these were written):

* ``facebook/dinov2-large``: config.json, model.safetensors, pytorch_model.bin,
  preprocessor_config.json -- a 2-layer, 32-wide DINOv2 whose config.json sets the size;
* ``lmsys/vicuna-7b-v1.5`` (main has no safetensors): config.json, generation_config.json,
  pytorch_model-0000{1,2}-of-00002.bin + pytorch_model.bin.index.json, tokenizer.model
  (SentencePiece BPE with byte fallback, as Llama's), tokenizer_config.json,
  special_tokens_map.json -- a 2-layer, 64-wide Llama;
* ``Lin-Chen/ShareGPT4V``: the three JSON files, of which stage 1 reads
  share-captioner_coco_lcs_sam_1246k_1107.json (images under coco/, llava/llava_pretrain/images/,
  sam/images/);
* ``liuhaotian/LLaVA-Pretrain``: images.zip (``00000/*.jpg``) beside blip_laion_cc_sbu_558k.json;
* ``nyu-visionx/Cambrian-Alignment``: coco.tar, sam.tar_part1..N (one tar split in pieces),
  jsons/alignment_2.5m.jsonl, merge_tars.py, extract.py;
* ``liuhaotian/LLaVA-Instruct-150K``: llava_v1_5_mix665k.json beside llava_instruct_150k.json;
* ``nyu-visionx/Cambrian-10M``: one ``<folder>.tar.gz`` per image folder, jsons/Cambrian10M.jsonl;
* the 19 benchmark repos as ``tests/eval/layouts.py`` writes them.
"""

from __future__ import annotations

import functools
import io
import json
import os
import tarfile
import tempfile
import zipfile

import numpy as np
from PIL import Image

from tests.eval import layouts

SHAREGPT4V_PT = "share-captioner_coco_lcs_sam_1246k_1107.json"
ROWS = 4  # records per training source


def jpeg(seed: int, size=(12, 10)) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def tar(members: dict[str, bytes], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _record(rid: str, image: str | None, question: str, answer: str, **extra) -> dict:
    rec = {"id": rid, "conversations": [
        {"from": "human", "value": ("<image>\n" if image else "") + question},
        {"from": "gpt", "value": answer}], **extra}
    if image:
        rec["image"] = image
    return rec


def _caption(i: int, image: str) -> dict:
    return _record(f"cap{i}", image, "Describe the image in detail.",
                   f"A photo numbered {i}: patches of colour, picture {i} of the set.")


def _folder_files(folder: str) -> dict[str, bytes]:
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".cache"]
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder).replace(os.sep, "/")] = fh.read()
    return out


def dinov2() -> dict[str, bytes]:
    import torch
    import transformers

    config = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       mlp_ratio=2, patch_size=14, image_size=518)
    torch.manual_seed(0)
    model = transformers.Dinov2Model(config).eval()
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        files = _folder_files(d)
        torch.save(model.state_dict(), os.path.join(d, "twin.bin"))
        with open(os.path.join(d, "twin.bin"), "rb") as fh:
            files["pytorch_model.bin"] = fh.read()
    files["preprocessor_config.json"] = json.dumps({
        "crop_size": {"height": 224, "width": 224}, "do_center_crop": True,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 256}}).encode()
    files["README.md"] = b"---\nlicense: apache-2.0\n---\n# DINOv2 (tiny stand-in)\n"
    return files


def _sentencepiece() -> bytes:
    import sentencepiece as spm

    text = ["USER: What is shown in the picture? ASSISTANT: A red square on a blue field.",
            "Describe the image in detail. A photo numbered 1 2 3 4 5 6 7 8 9 0 of the set.",
            "Answer with the option's letter from the given choices directly. (A) (B) yes no"]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text * 20), model_writer=buf, vocab_size=320, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        normalization_rule_name="identity", hard_vocab_limit=False, minloglevel=2)
    return buf.getvalue()


def _answers_end_at_once(model, eos: int) -> None:
    """Random weights, except that residual channel 0 carries a constant no layer writes to and
    that only the EOS row of the output layer reads: greedy answers end at their first token, so
    the walk's decoding stays short."""
    import torch

    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 100.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0] = 0.0
            layer.mlp.down_proj.weight[0] = 0.0
        model.lm_head.weight[eos, 0] = 10.0


def vicuna() -> dict[str, bytes]:
    import torch
    import transformers

    files = {
        "tokenizer.model": _sentencepiece(),
        "tokenizer_config.json": json.dumps({
            "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
            "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None, "legacy": False,
            "clean_up_tokenization_spaces": False, "model_max_length": 4096,
            "padding_side": "right", "sp_model_kwargs": {},
            "tokenizer_class": "LlamaTokenizer"}).encode(),
        "special_tokens_map.json": json.dumps({"bos_token": "<s>", "eos_token": "</s>",
                                               "unk_token": "<unk>"}).encode(),
        "generation_config.json": json.dumps({"bos_token_id": 1, "eos_token_id": 2,
                                              "pad_token_id": 0}).encode(),
        "README.md": b"---\nlicense: llama2\n---\n# Vicuna (tiny stand-in)\n",
    }
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "tokenizer.model"), "wb") as fh:
            fh.write(files["tokenizer.model"])
        with open(os.path.join(d, "tokenizer_config.json"), "wb") as fh:
            fh.write(files["tokenizer_config.json"])
        vocab = len(transformers.AutoTokenizer.from_pretrained(d))
        config = transformers.LlamaConfig(
            vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
            rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
        torch.manual_seed(0)
        model = transformers.LlamaForCausalLM(config).eval()
        _answers_end_at_once(model, config.eos_token_id)
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        names = sorted(sd)
        shards = {"pytorch_model-00001-of-00002.bin": names[:len(names) // 2],
                  "pytorch_model-00002-of-00002.bin": names[len(names) // 2:]}
        weight_map = {}
        for shard, keys in shards.items():
            path = os.path.join(d, shard)
            torch.save({k: sd[k] for k in keys}, path)
            with open(path, "rb") as fh:
                files[shard] = fh.read()
            weight_map.update(dict.fromkeys(keys, shard))
        total = sum(t.numel() * t.element_size() for t in sd.values())
        files["pytorch_model.bin.index.json"] = json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2).encode()
        files["config.json"] = config.to_json_string().encode()
    return files


def sharegpt4v() -> dict[str, dict[str, bytes]]:
    """The stage-1 repos: captions, and the three image sources they point at."""
    coco = {f"coco/train2017/{i:012d}.jpg": jpeg(i) for i in range(ROWS)}
    llava = {f"00000/{i:09d}.jpg": jpeg(100 + i) for i in range(ROWS)}
    sam = {f"sam/images/sa_{i}.jpg": jpeg(200 + i) for i in range(ROWS)}
    captions = ([_caption(i, n) for i, n in enumerate(coco)]
                + [_caption(10 + i, f"llava/llava_pretrain/images/{n}")
                   for i, n in enumerate(llava)]
                + [_caption(20 + i, n) for i, n in enumerate(sam)])
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        for name, data in llava.items():
            zf.writestr(name, data)
    sam_tar = tar(sam)
    third = len(sam_tar) // 3
    return {
        "Lin-Chen/ShareGPT4V": {
            SHAREGPT4V_PT: json.dumps(captions).encode(),
            "sharegpt4v_instruct_gpt4-vision_cap100k.json": json.dumps(captions[:2]).encode(),
            "sharegpt4v_mix665k_cap23k_coco-ap9k_lcs3k_sam9k_div2k.json":
                json.dumps(captions[2:4]).encode(),
            "README.md": b"---\nlicense: cc-by-nc-4.0\n---\n# ShareGPT4V\n"},
        "liuhaotian/LLaVA-Pretrain": {
            "images.zip": zbuf.getvalue(),
            "blip_laion_cc_sbu_558k.json": json.dumps(captions[4:8]).encode(),
            "README.md": b"# LLaVA-Pretrain\n"},
        "nyu-visionx/Cambrian-Alignment": {
            "coco.tar": tar(coco), "sam.tar_part1": sam_tar[:third],
            "sam.tar_part2": sam_tar[third:2 * third], "sam.tar_part3": sam_tar[2 * third:],
            "jsons/alignment_2.5m.jsonl": b"".join(json.dumps(c).encode() + b"\n"
                                                   for c in captions),
            "merge_tars.py": b"# joins the split tars\n", "extract.py": b"# extracts tars\n",
            "README.md": b"# Cambrian-Alignment\n"},
    }


def cambrian_737k() -> dict[str, dict[str, bytes]]:
    """The stage-2 repos: LLaVA-665K's annotations, Cambrian-10M's annotations and image tars."""
    folders = {"coco": "coco/train2017", "gqa": "gqa/images", "ocr_vqa": "ocr_vqa/images",
               "textvqa": "textvqa/train_images", "vg": "vg/VG_100K"}
    images = {k: {f"{sub}/{k}{i}.jpg": jpeg(300 + 10 * n + i) for i in range(ROWS)}
              for n, (k, sub) in enumerate(folders.items())}
    mix = [_record(f"{k}{i}", name, f"What is in {k} picture {i}?", f"Thing {i} of {k}.")
           for k, imgs in images.items() for i, name in enumerate(imgs)]
    mix += [_record(f"sharegpt{i}", None, f"Tell me fact {i}.", f"Fact {i}.") for i in range(2)]
    extra = {"ai2d": "ai2d_15k.json", "docvqa": "docvqa_39k.json", "dvqa": "dvqa_2325k.json"}
    extra_images = {k: {f"{k}/{k}{i}.png": jpeg(500 + 10 * n + i) for i in range(ROWS)}
                    for n, k in enumerate(extra)}
    ten_m = [_record(f"{k}{i}", name, f"Which {k} answer {i}?", f"Answer {i}.",
                     source=extra[k]) for k, imgs in extra_images.items()
             for i, name in enumerate(imgs)]
    ten_m.append(_record("chart0", "chartqa/0.png", "Chart?", "Bars.", source="chartqa_28k.json"))
    tars = {f"{k}.tar.gz": tar(v, gz=True) for k, v in {**images, **extra_images}.items()}
    tars["chartqa.tar.gz"] = tar({"chartqa/0.png": jpeg(900)}, gz=True)
    return {
        "liuhaotian/LLaVA-Instruct-150K": {
            "llava_v1_5_mix665k.json": json.dumps(mix).encode(),
            "llava_instruct_150k.json": json.dumps(mix[:3]).encode(),
            "README.md": b"# LLaVA-Instruct-150K\n"},
        "nyu-visionx/Cambrian-10M": {
            **tars, "jsons/Cambrian10M.jsonl": b"".join(json.dumps(r).encode() + b"\n"
                                                        for r in ten_m),
            "jsons/Cambrian737k.jsonl": b"", "README.md": b"# Cambrian-10M\n"},
    }


def benchmarks() -> dict[str, dict[str, bytes]]:
    """Every benchmark repo (the 15 of the Cambrian suite and the extras)."""
    from cambrian.eval import suite

    out = {}
    with tempfile.TemporaryDirectory() as d:
        layouts.write_all(d)
        for name in layouts.WRITERS:
            out[suite.benchmark(name).SOURCE.repo] = _folder_files(os.path.join(d, name))
    return out


@functools.cache
def all_repos() -> tuple[tuple[str, str, dict[str, bytes]], ...]:
    """(repo type, repo id, files) of every repo the probe reads (built once per session)."""
    return (("model", "facebook/dinov2-large", dinov2()),
            ("model", "lmsys/vicuna-7b-v1.5", vicuna()),
            *(("dataset", r, f) for r, f in {**sharegpt4v(), **cambrian_737k(),
                                              **benchmarks()}.items()))


def serve(hub) -> None:
    """Adds every repo of the probe to the fake Hub ``hub``."""
    for kind, repo, files in all_repos():
        hub.add(repo, files, repo_type=kind)
