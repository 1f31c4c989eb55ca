import numpy as np
import pytest

from cambrian.data import chat_templates, conversation, tokenizer
from cambrian.data.readers import DataError

REC = {"id": "r1", "image": "a.png", "conversations": [
    {"from": "human", "value": "<image>\nWhat colour is the shape?"},
    {"from": "gpt", "value": "red"},
    {"from": "human", "value": "How many shapes are there?"},
    {"from": "gpt", "value": "B"}]}


MARKERS = ["<|eot_id|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
           "<|im_start|>", "<|im_end|>"]


def _metaspace_tokenizer():
    """A tiny Llama-2 / Vicuna-style tokenizer: metaspace BPE that puts <s> in front."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    corpus = [chat_templates.VICUNA_SYSTEM, "USER: ASSISTANT: What colour is the shape? red",
              "How many shapes are there? B"] * 5
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def test_prompt_ids_are_upstreams_tokenizer_image_token():
    """mm_utils.py:204-223 by hand: chunk 0 with the tokenizer's BOS, the image, chunk 1 without
    its first token; the metaspace tokenizer then writes the first word as "\u2581A"."""
    tok = _metaspace_tokenizer()
    t = chat_templates.get("vicuna_v1")
    ids = conversation.encode_prompt("What?", t, tok, num_image_tokens=3)
    before, after = t.text([("user", "<image>\nWhat?")], add_generation_prompt=True).split(
        "<image>")
    assert ids.tolist() == (tok(before).input_ids + [conversation.IMAGE_TOKEN] * 3
                            + tok(after).input_ids[1:])
    assert ids[0] == tok.bos_token_id and tok.convert_ids_to_tokens(int(ids[1])) == "\u2581A"


@pytest.mark.parametrize("template,tok", [("vicuna_v1", "synthetic"), ("llama_3", "synthetic"),
                                          ("chatml_direct", "synthetic"),
                                          ("vicuna_v1", "metaspace")])
def test_loss_mask_covers_exactly_the_assistant_replies(template, tok):
    if tok == "metaspace":
        tok = _metaspace_tokenizer()
    else:
        tok = tokenizer.load("synthetic")
        tok.add_special_tokens({"additional_special_tokens": MARKERS})  # as the real tokenizers
    t = chat_templates.get(template)
    enc = conversation.encode_record(REC, "x:1", t, tok, num_image_tokens=5, max_len=512)
    ids, mask = enc["tokens"], enc["loss_mask"]
    assert (ids == conversation.IMAGE_TOKEN).sum() == 5
    assert ids[0] == tok.bos_token_id and not mask[0]  # the tokenizer's BOS, once
    assert not mask[ids == conversation.IMAGE_TOKEN].any()
    # The trained tokens decode to the replies, each followed by the template's end-of-turn text.
    trained = tok.decode(ids[mask]).replace(" ", "")
    assert trained == f"red{t.stop}B{t.stop}".replace(" ", "")
    # Runs of trained tokens are exactly two (one per reply).
    starts = np.flatnonzero(mask & ~np.r_[False, mask[:-1]])
    assert len(starts) == 2


def test_truncation_keeps_image_or_fails_with_record_name():
    tok = tokenizer.load("synthetic")
    t = chat_templates.get("vicuna_v1")
    # a limit 4 tokens short of the whole record: the tail is cut, the image kept
    n = len(conversation.encode_record(REC, "x:1", t, tok, 5, 512)["tokens"]) - 4
    enc = conversation.encode_record(REC, "x:1", t, tok, 5, max_len=n)
    assert len(enc["tokens"]) == n and (enc["tokens"] == conversation.IMAGE_TOKEN).sum() == 5
    with pytest.raises(DataError, match=r"x:1: record 'r1' needs \d+ tokens"):
        conversation.encode_record(REC, "x:1", t, tok, 500, max_len=60)


@pytest.mark.parametrize("rec,msg", [
    ({"id": "a", "conversations": []}, "has no conversation"),
    ({"id": "a", "image": "x.png", "conversations": [{"from": "human", "value": "hi"},
                                                    {"from": "gpt", "value": "yo"}]},
     "0 <image> placeholders but an image"),
    ({"id": "a", "conversations": [{"from": "bot", "value": "hi"}]}, "from = 'bot'"),
    ({"id": "a", "conversations": [{"from": "human", "value": "hi"}]}, "no assistant reply"),
])
def test_malformed_records_name_file_and_record(rec, msg):
    with pytest.raises(DataError, match="f.json:7") as e:
        conversation.encode_record(rec, "f.json:7", chat_templates.get("vicuna_v1"),
                                   tokenizer.load("synthetic"), 4, 100)
    assert msg in str(e.value)


def test_system_prompt_override_and_record_system_turn():
    tok = tokenizer.load("synthetic")
    t = chat_templates.get("vicuna_v1")
    plain = conversation.encode_record(REC, "x", t, tok, 1, 512, system="")
    default = conversation.encode_record(REC, "x", t, tok, 1, 512)
    assert len(plain["tokens"]) < len(default["tokens"])
    own = {**REC, "conversations": [{"from": "system", "value": ""}] + REC["conversations"]}
    enc = conversation.encode_record(own, "x", t, tok, 1, 512)
    assert np.array_equal(enc["tokens"], plain["tokens"])
