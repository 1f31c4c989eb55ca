import pytest

from cambrian.data import prompts
from cambrian.data.prompts import PromptRule
from cambrian.data.readers import BadRecord
from cambrian.data.records import InlineImage, parse

from .fakes import conv, record


def test_parse_valid_records():
    s = parse(record(7, "a.png"), "f:1")
    assert (s.id, s.images) == ("7", ("a.png",))
    assert s.conversations[0]["from"] == "human"
    # aliases, a system turn, multi-turn, two images, no id
    rec = {"image": ["a.png", {"bytes": b"xx", "path": "b.png"}], "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "user", "value": "<image> <image> Same?"}, {"from": "assistant", "value": "No."},
        {"from": "human", "value": "Why?"}, {"from": "gpt", "value": "Colours."}]}
    s = parse(rec, "f:#3")
    assert s.id == "f:#3"
    assert s.images == ("a.png", InlineImage(b"xx", "b.png"))
    assert [t["from"] for t in s.conversations] == ["system", "human", "gpt", "human", "gpt"]


@pytest.mark.parametrize("rec, reason, message", [
    (["not", "a", "dict"], "malformed_record", "expected a JSON object, got list"),
    ({"id": 1, "image": 3, "conversations": conv("q", "a")}, "malformed_record", "field 'image'"),
    ({"id": 1, "image": {"bytes": None, "path": "p.png"}, "conversations": conv("q", "a")},
     "missing_image", "has no bytes"),
    ({"id": 1}, "malformed_conversation", "no 'conversations'"),
    ({"id": 1, "conversations": []}, "empty_conversation", "is empty"),
    ({"id": 1, "conversations": [{"from": "system", "value": "s"}]}, "empty_conversation",
     "only a system turn"),
    ({"id": 1, "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]},
     "malformed_conversation", "turn 0 is 'gpt', expected 'human'"),
    ({"id": 1, "conversations": [{"from": "human", "value": "q"}]}, "malformed_conversation",
     "no answer"),
    ({"id": 1, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": " "}]},
     "malformed_conversation", "turn 1 \\(gpt\\) is empty"),
    ({"id": 1, "conversations": [{"from": "robot", "value": "q"}, {"from": "gpt", "value": "a"}]},
     "malformed_conversation", "unknown role 'robot'"),
    ({"id": 1, "conversations": [{"from": "human"}, {"from": "gpt", "value": "a"}]},
     "malformed_conversation", "turn 0 must be"),
    ({"id": 1, "image": "a.png", "conversations": conv("q", "a", image=False)},
     "image_token_mismatch", "0 <image> placeholder\\(s\\) for 1 image"),
    ({"id": 1, "conversations": conv("q", "a", image=True)}, "image_token_mismatch",
     "1 <image> placeholder\\(s\\) for 0 image"),
])
def test_parse_rejects(rec, reason, message):
    with pytest.raises(BadRecord, match=message) as e:
        parse(rec, "data.jsonl:12")
    assert e.value.reason == reason
    assert str(e.value).startswith("data.jsonl:12: ")


def test_multiple_choice_detection():
    assert prompts.is_multiple_choice("Which is red?\nA. apple\nB. sky\nC. grass")
    assert prompts.is_multiple_choice("Pick one: (A) cat (B) dog")
    assert not prompts.is_multiple_choice("What is A. Smith holding?")
    assert not prompts.is_multiple_choice("How many apples are there?")


def test_prompt_rules_follow_when_and_turns():
    turns = conv("How many?", "3") + [{"from": "human", "value": "Which?\nA. x\nB. y"},
                                       {"from": "gpt", "value": "A"}]
    rules = (PromptRule(prompts.SHORT_ANSWER, when="open"),
             PromptRule(prompts.OPTION_LETTER, when="multiple_choice"))
    out, changed = prompts.apply(turns, rules)
    assert changed
    assert out[0]["value"] == "<image>\nHow many?\n" + prompts.SHORT_ANSWER
    assert out[2]["value"] == "Which?\nA. x\nB. y\n" + prompts.OPTION_LETTER
    assert out[1] == turns[1] and out[3] == turns[3]  # answers untouched
    out, _ = prompts.apply(turns, (PromptRule(prompts.SHORT_ANSWER, turns="first"),))
    assert out[0]["value"].endswith(prompts.SHORT_ANSWER) and out[2] == turns[2]


def test_several_rules_join_and_existing_prompts_are_kept():
    turns = conv("Where is the menu?", "<no answer>")
    rules = (PromptRule(prompts.NO_ANSWER), PromptRule(prompts.SHORT_ANSWER))
    out, _ = prompts.apply(turns, rules)
    assert out[0]["value"] == ("<image>\nWhere is the menu?\n" + prompts.NO_ANSWER + " "
                               + prompts.SHORT_ANSWER)
    again, changed = prompts.apply(out, rules)
    assert again == out and not changed
    assert prompts.apply(turns, ()) == (turns, False)


def test_prompt_rule_validation():
    with pytest.raises(ValueError, match="when"):
        PromptRule("x", when="sometimes")
    with pytest.raises(ValueError, match="turns"):
        PromptRule("x", turns="last")
