"""Templates against the exact strings of Cambrian's conversation.py (cambrian.md section 3).

Expected strings are upstream's ``Conversation.get_prompt()`` worked out by hand for these turns
(the tokenizer adds its BOS when the text is tokenised: ``tests/data/test_conversation.py``).
"""


from cambrian.data import chat_templates as T

TURNS = [("user", "What is it?\n<image>"), ("assistant", "A cat."), ("user", "Sure?"),
         ("assistant", "Yes.")]
SYS = T.CAMBRIAN_SYSTEM


def test_vicuna_v1():
    s = T.get("vicuna_v1").text(TURNS)
    assert s == ("A chat between a curious user and an artificial intelligence assistant. The "
                 "assistant gives helpful, detailed, and polite answers to the user's questions. "
                 "USER: <image>\nWhat is it? ASSISTANT: A cat.</s>USER: Sure? ASSISTANT: Yes.</s>")
    g = T.get("vicuna_v1").text(TURNS[:1], add_generation_prompt=True)
    assert g.endswith("USER: <image>\nWhat is it? ASSISTANT:")


def test_llama_3_has_no_blank_line_after_headers():
    s = T.get("llama_3").text(TURNS[:2])
    assert s == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>" +
                 T.LLAMA3_SYSTEM + "<|eot_id|><|start_header_id|>user<|end_header_id|><image>\n"
                 "What is it?<|eot_id|><|start_header_id|>assistant<|end_header_id|>A cat."
                 "<|eot_id|>")
    g = T.get("llama_3").text(TURNS[:1], add_generation_prompt=True)
    assert g.endswith("<|start_header_id|>assistant<|end_header_id|>")


def test_llama_3_system_prompt_is_upstreams_own_string():
    # conversation.py:521-523: a triple-quoted string whose line breaks and 4-space indents (and
    # the spaces before them) are part of the prompt; it is not the chatml_direct text
    assert T.get("llama_3").system == (
        "You are Cambrian, a highly intelligent multimodal AI trained by NYU Vision X. \n"
        "    As a multimodal AI, you have the ability to process and analyze images. Whenever an "
        "image is present in the conversation, very carefully examine it and consider its "
        "content when formulating your response.\n    You should give concise responses to very "
        "simple questions, but provide thorough responses to more complex and open-ended "
        "questions. ")
    assert T.get("chatml_direct").system == SYS


def test_mistral_instruct():
    # LLAMA_2 sep style, sep "" and sep2 "</s>" (conversation.py:79-99, :475-484)
    t = T.get("mistral_instruct")
    assert t.text(TURNS) == ("[INST] <image>\nWhat is it? [/INST] A cat. </s>[INST] Sure? "
                             "[/INST] Yes. </s>")
    assert t.text(TURNS[:1], add_generation_prompt=True) == \
        "[INST] <image>\nWhat is it? [/INST]"
    assert t.text(TURNS[:2], system="Be brief.") == (
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n<image>\nWhat is it? [/INST] A cat. </s>")
    assert [x for x, train in t.render(TURNS) if train] == ["A cat. </s>", "Yes. </s>"]


def test_mistral_v2():
    # MISTRAL sep style: replies follow [/INST] with no space, "</s>" right after (:124-145)
    t = T.get("mistral_v2")
    assert t.text(TURNS) == ("[INST] <image>\nWhat is it? [/INST]A cat.</s>[INST] Sure? "
                             "[/INST]Yes.</s>")
    assert t.text(TURNS[:1], add_generation_prompt=True) == \
        "[INST] <image>\nWhat is it? [/INST]"
    assert t.stop == "</s>"


def test_chatml_direct_has_no_newline_after_im_end():
    s = T.get("chatml_direct").text(TURNS[:2])
    assert s == ("<|im_start|>system\n" + SYS + "<|im_end|><|im_start|>user\n<image>\nWhat is it?"
                 "<|im_end|><|im_start|>assistant\nA cat.<|im_end|>")


def test_phi3():
    s = T.get("phi3").text(TURNS[:2], add_generation_prompt=False)
    assert s == ("<|system|>\nYou are a helpful AI assistant.<|end|>\n<|user|>\n<image>\n"
                 "What is it?<|end|>\n<|assistant|>\nA cat.<|end|>\n")


def test_only_assistant_replies_are_trainable():
    segs = T.get("llama_3").render(TURNS)
    assert [t for t, train in segs if train] == ["A cat.<|eot_id|>", "Yes.<|eot_id|>"]


def test_image_moved_to_front_of_first_user_turn_only():
    turns = T.move_image_first([("user", "Look <image> here"), ("assistant", "ok")])
    assert turns[0] == ("user", "<image>\nLook  here")
