"""Tokenizers through transformers' API.

``load(name_or_dir, cache_dir)`` returns a ``PreTrainedTokenizerFast``: a Hugging Face tokenizer
directory for real LLMs, or ``"synthetic"`` for the small byte-level BPE trained on the embedded
synthetic corpus for ``:runlocal`` (shipped in ``assets/``).
"""

from __future__ import annotations

import json
import os

from transformers import AutoTokenizer, PreTrainedTokenizerFast

from cambrian import fileio
from cambrian.data import synthetic

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]
# What AutoTokenizer reads from a checkpoint folder (a gs:// one is copied without its weights).
TOKENIZER_FILES = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "*.model",
                   "vocab*", "merges.txt", "config.json", "generation_config.json")
SYNTHETIC_VOCAB = 640


def train_synthetic(texts: list[str], out_dir: str) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=SYNTHETIC_VOCAB, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(out_dir)
    return fast


ASSET = os.path.join(os.path.dirname(__file__), "assets", "synthetic_tokenizer.json")


def synthetic_tokenizer() -> PreTrainedTokenizerFast:
    """The shipped byte-level BPE of the synthetic corpus (rebuild: ``python -m
    cambrian.data.tokenizer --rebuild``)."""
    return PreTrainedTokenizerFast(tokenizer_file=ASSET, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<pad>")


def rebuild(cache_dir: str) -> None:
    """Retrains the shipped BPE on the synthetic conversations as the model sees them: rendered
    with the ``:runlocal`` template (vicuna_v1, no system prompt), so the role markers
    (`` ASSISTANT``, ``USER``) become single tokens; every other template's example text is
    added too so each stays reasonably short."""
    from cambrian.data.chat_templates import TEMPLATES
    from cambrian.data.conversation import record_turns

    root = synthetic.ensure(cache_dir)
    texts = []
    for split in ("align", "train"):
        path = os.path.join(root, f"{split}.json")
        with open(path) as fh:
            records = json.load(fh)
        texts += [TEMPLATES["vicuna_v1"].text(record_turns(r, path)[0], system="")
                  for r in records]
    texts += [t.example_text() for t in TEMPLATES.values()] * (len(texts) // 20)
    out = os.path.join(cache_dir, "tokenizer-rebuild")
    train_synthetic(texts, out)
    os.replace(os.path.join(out, "tokenizer.json"), ASSET)


def load(name: str, cache_dir: str = "") -> PreTrainedTokenizerFast:
    """``"synthetic"`` or a Hugging Face tokenizer directory -> PreTrainedTokenizerFast."""
    if name == "synthetic":
        return synthetic_tokenizer()
    if not name:
        raise FileNotFoundError("model.tokenizer is empty: set it to the LLM's Hugging Face "
                                "tokenizer directory (usually the LLM checkpoint directory)")
    name = fileio.local_copy(name, cache_dir or None, only=TOKENIZER_FILES)  # gs:// -> cache
    if not os.path.isdir(name):
        raise FileNotFoundError(f"tokenizer directory not found: {name}. Download the LLM's "
                                "tokenizer files (tokenizer.json, tokenizer_config.json) there.")
    return AutoTokenizer.from_pretrained(name)


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--rebuild", action="store_true", help="retrain the shipped synthetic BPE")
    p.add_argument("--cache_dir", default=os.path.expanduser("~/.cache/cambrian"))
    a = p.parse_args()
    if a.rebuild:
        rebuild(a.cache_dir)
