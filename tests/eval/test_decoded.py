"""Predictions are the text upstream's eval gives for the same tokens, on released tokenizer
layouts (tiny tokenizers with the Llama-3 / Vicuna special tokens and tokenizer configs).

The expected strings are written out by hand from transformers 4.37's documented decode:
special tokens skipped, ``clean_up_tokenization`` when the config sets
``clean_up_tokenization_spaces`` (Llama-3: true, Vicuna: false), then ``.strip()``.
"""

from __future__ import annotations

import json
import os

from cambrian.eval import decoded

TEXT = "Hello , world ? I do n't know . It 's red"
CLEAN = "Hello, world? I don't know. It's red"


def _ids(tok, text):
    return tok(text, add_special_tokens=False).input_ids


def test_llama3_skips_special_tokens_and_cleans_up_as_transformers_437(release_tokenizers):
    _, tok, ids = release_tokenizers["llama3"]
    special = tok.convert_tokens_to_ids(["<|start_header_id|>", "<|end_header_id|>",
                                         "<|reserved_special_token_4|>"])
    out = [special[0], *_ids(tok, "assistant"), special[1], *_ids(tok, " " + TEXT + " "),
           special[2], ids["eot"]]
    # the header's text is an ordinary word: only the special tokens vanish
    want = "assistant " + CLEAN
    assert decoded.prediction_text(tok, out) == want
    assert decoded.prediction_text(tok, out, stop_ids=(ids["eot"],)) == want
    # " ' " -> "'", " 'm", " 've", " 're", " !", " ,"
    assert decoded.prediction_text(tok, _ids(tok, "I 'm sure they 've gone , you 're ' ok !")) \
        == "I'm sure they've gone, you're'ok!"


def test_vicuna_keeps_spaces_its_config_does_not_clean(release_tokenizers):
    d, tok, ids = release_tokenizers["llama2"]
    with open(os.path.join(d, "tokenizer_config.json")) as fh:
        assert json.load(fh)["clean_up_tokenization_spaces"] is False
    out = [*_ids(tok, TEXT), ids["eos"]]
    assert decoded.prediction_text(tok, out, stop_ids=(ids["eos"],)) == TEXT


def test_clean_up_is_done_here_whatever_transformers_does(release_tokenizers):
    """transformers >= 4.4x skips the clean-up for BPE tokenizers; upstream ran 4.37."""
    _, tok, _ = release_tokenizers["llama3"]
    assert decoded.cleans_up(tok)
    raw = tok.decode(_ids(tok, TEXT), skip_special_tokens=True,
                     clean_up_tokenization_spaces=False)
    assert raw == TEXT
    assert decoded.clean_up_tokenization(raw) == CLEAN


def test_a_stop_token_that_is_not_special_leaves_no_text(release_tokenizers):
    _, tok, ids = release_tokenizers["llama3"]
    word = _ids(tok, " image")
    assert len(word) == 1
    out = [*_ids(tok, "It is"), *word]
    assert decoded.prediction_text(tok, out, stop_ids=tuple(word)) == "It is"
    assert decoded.prediction_text(tok, out) == "It is image"

