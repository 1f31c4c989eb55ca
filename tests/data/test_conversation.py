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


@pytest.mark.parametrize("template", ["vicuna_v1", "llama_3", "chatml_direct"])
def test_loss_mask_covers_exactly_the_assistant_replies(template):
    tok = tokenizer.load("synthetic")
    tok.add_special_tokens({"additional_special_tokens": MARKERS})  # as the real LLM tokenizers
    t = chat_templates.get(template)
    enc = conversation.encode_record(REC, "x:1", t, tok, num_image_tokens=5, max_len=512)
    ids, mask = enc["tokens"], enc["loss_mask"]
    assert (ids == conversation.IMAGE_TOKEN).sum() == 5
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
    enc = conversation.encode_record(REC, "x:1", t, tok, 5, max_len=80)
    assert len(enc["tokens"]) == 80
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
