"""Chat templates exactly as Cambrian-1 trained its models (``cambrian/conversation.py``).

A template renders a conversation into text segments ``(text, trainable)``; ``trainable`` marks
the assistant replies and their end-of-turn marker, which are the only tokens with loss. The image
placeholder ``<image>`` is moved to the front of the first user turn followed by ``"\\n"``.

The rendered text is upstream's ``Conversation.get_prompt()``. BOS is not part of it: upstream
tokenises that text with the tokenizer's own special tokens (``mm_utils.tokenizer_image_token``,
``conversation.tokenize_segments``), so the tokenizer's BOS comes first, before whatever the
template writes itself (Llama-3's tokenizer adds ``<|begin_of_text|>`` and ``llama_3`` writes one
too: the prompt starts with two).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

IMAGE = "<image>"
# conversation.py:521-523 (llama_3): its newlines, indentation and trailing spaces are part of it.
LLAMA3_SYSTEM = (
    "You are Cambrian, a highly intelligent multimodal AI trained by NYU Vision X. \n"
    "    As a multimodal AI, you have the ability to process and analyze images. Whenever an "
    "image is present in the conversation, very carefully examine it and consider its content "
    "when formulating your response.\n"
    "    You should give concise responses to very simple questions, but provide thorough "
    "responses to more complex and open-ended questions. ")
# conversation.py:533 (chatml_direct, the definition that wins)
CAMBRIAN_SYSTEM = (
    "You are Cambrian, a highly intelligent multimodal AI trained by NYU Vision X. As a multimodal "
    "AI, you have the ability to process and analyze images. Whenever an image is present in the "
    "conversation, very carefully examine it and consider its content when formulating your "
    "response. You should give concise responses to very simple questions, but provide thorough "
    "responses to more complex and open-ended questions.")
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions.")

Segments = list[tuple[str, bool]]


@dataclasses.dataclass(frozen=True)
class Template:
    name: str
    system: str
    stop: str  # end-of-turn text of the assistant; generation stops on its token
    _render: Callable[[str, Sequence[tuple[str, str]], bool], Segments]

    def render(self, turns: Sequence[tuple[str, str]], *, add_generation_prompt: bool = False,
               system: str | None = None) -> Segments:
        """turns: ``[("user" | "assistant", text), ...]`` -> ``[(text, trainable), ...]``."""
        return self._render(self.system if system is None else system, move_image_first(turns),
                            add_generation_prompt)

    def text(self, turns, **kw) -> str:
        return "".join(t for t, _ in self.render(turns, **kw))

    def example_text(self) -> str:
        return self.text([("user", f"{IMAGE}\nWhat is it?"), ("assistant", "A cat.")])


def move_image_first(turns: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Cambrian/LLaVA: the first user turn holding ``<image>`` gets it moved to its front."""
    out, done = [], False
    for role, text in turns:
        if role == "user" and IMAGE in text and not done:
            text = IMAGE + "\n" + text.replace(IMAGE, "").strip()
            done = True
        out.append((role, text))
    return out


def _vicuna_v1(system, turns, gen) -> Segments:
    # sep_style TWO: system + " " + "USER: msg ASSISTANT: msg</s>USER: ..."
    seg: Segments = [(system + " ", False)]
    for role, msg in turns:
        if role == "user":
            seg.append((f"USER: {msg} ", False))
        else:
            seg.append(("ASSISTANT: ", False))
            seg.append((f"{msg}</s>", True))
    if gen:
        seg.append(("ASSISTANT:", False))
    return seg


def _llama_3(system, turns, gen) -> Segments:
    # Cambrian's llama_3: no "\n\n" after the header tokens (differs from Meta's own template).
    h = "<|start_header_id|>{}<|end_header_id|>"
    seg: Segments = [("<|begin_of_text|>" + h.format("system") + system + "<|eot_id|>", False)]
    for role, msg in turns:
        if role == "user":
            seg.append((h.format("user") + msg + "<|eot_id|>", False))
        else:
            seg.append((h.format("assistant"), False))
            seg.append((msg + "<|eot_id|>", True))
    if gen:
        seg.append((h.format("assistant"), False))
    return seg


def _chatml_direct(system, turns, gen) -> Segments:
    # MPT style: no newline after <|im_end|>.
    seg: Segments = [("<|im_start|>system\n" + system + "<|im_end|>", False)]
    for role, msg in turns:
        if role == "user":
            seg.append(("<|im_start|>user\n" + msg + "<|im_end|>", False))
        else:
            seg.append(("<|im_start|>assistant\n", False))
            seg.append((msg + "<|im_end|>", True))
    if gen:
        seg.append(("<|im_start|>assistant\n", False))
    return seg


def _llama_2_style(system, turns, gen, reply_prefix: str, reply_suffix: str) -> Segments:
    # LLAMA_2 / MISTRAL sep styles with sep "" (conversation.py:79-99, :124-145): the system
    # prompt, if any, opens the first user message inside [INST]; replies follow [/INST].
    seg: Segments = []
    for i, (role, msg) in enumerate(turns):
        if role == "user":
            if i == 0 and system:
                msg = f"<<SYS>>\n{system}\n<</SYS>>\n\n" + msg
            seg.append((f"[INST] {msg} [/INST]", False))
        else:
            if reply_prefix:
                seg.append((reply_prefix, False))
            seg.append((msg + reply_suffix, True))
    return seg or [("", False)]


def _mistral_instruct(system, turns, gen) -> Segments:
    # LLAMA_2 style, sep2 "</s>": "[INST] q [/INST] a </s>[INST] ..."
    return _llama_2_style(system, turns, gen, " ", " </s>")


def _mistral_v2(system, turns, gen) -> Segments:
    # MISTRAL style, sep2 "</s>": "[INST] q [/INST]a</s>[INST] ..."
    return _llama_2_style(system, turns, gen, "", "</s>")


def _phi3(system, turns, gen) -> Segments:
    seg: Segments = [("<|system|>\n" + system + "<|end|>\n", False)]
    for role, msg in turns:
        if role == "user":
            seg.append(("<|user|>\n" + msg + "<|end|>\n", False))
        else:
            seg.append(("<|assistant|>\n", False))
            seg.append((msg + "<|end|>\n", True))
    if gen:
        seg.append(("<|assistant|>\n", False))
    return seg


TEMPLATES = {
    "vicuna_v1": Template("vicuna_v1", VICUNA_SYSTEM, "</s>", _vicuna_v1),
    "llama_3": Template("llama_3", LLAMA3_SYSTEM, "<|eot_id|>", _llama_3),
    "chatml_direct": Template("chatml_direct", CAMBRIAN_SYSTEM, "<|im_end|>", _chatml_direct),
    "phi3": Template("phi3", "You are a helpful AI assistant.", "<|end|>", _phi3),
    # conversation.py:475-506: no system prompt by default
    "mistral_instruct": Template("mistral_instruct", "", "</s>", _mistral_instruct),
    "mistral_v2": Template("mistral_v2", "", "</s>", _mistral_v2),
}


def get(name: str) -> Template:
    if name not in TEMPLATES:
        raise ValueError(f"unknown chat template {name!r}; known: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]
