"""Generated token ids -> the prediction text, as Cambrian-1's eval scripts produce it.

Upstream decodes ``tokenizer.batch_decode(output_ids, skip_special_tokens=True)[0].strip()``
(cambrian-mllm/cambrian@539ffc3:eval/eval/gqa/gqa_eval.py:eval_model, the same in every
``*_eval.py``) under transformers 4.37, whose ``decode`` then applies
``clean_up_tokenization`` when the tokenizer's config sets ``clean_up_tokenization_spaces``
(Llama-3's does; Vicuna's and Yi's do not). Newer transformers skip that clean-up for BPE
tokenizers, so it is done here, as 4.37 did it, whatever transformers is installed. lmms-eval's and
VLMEvalKit's Cambrian wrappers decode the same way (their ``.strip()`` included), so one text
serves every scoring profile; lmms-eval's per-task stop strings are applied by its scorers.
"""

from __future__ import annotations

from collections.abc import Sequence

# transformers 4.37 PreTrainedTokenizerBase.clean_up_tokenization, in its order
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def clean_up_tokenization(text: str) -> str:
    """transformers 4.37's clean-up of spaces before punctuation and English contractions."""
    for old, new in _CLEAN_UP:
        text = text.replace(old, new)
    return text


def cleans_up(tokenizer) -> bool:
    """Whether the tokenizer's config asks for the clean-up (its ``tokenizer_config.json``
    value; without one, the tokenizer object's own setting)."""
    configured = tokenizer.init_kwargs.get("clean_up_tokenization_spaces")
    if configured is None:
        configured = getattr(tokenizer, "clean_up_tokenization_spaces", False)
    return bool(configured)


def prediction_text(tokenizer, ids: Sequence[int], stop_ids: Sequence[int] = ()) -> str:
    """The text upstream's eval gives for generated ``ids``: special tokens skipped, 4.37's
    clean-up where configured, stripped. A final token in ``stop_ids`` (the token that ended
    generation, which upstream's EOS handling never decodes) is dropped first, so a stop token
    the tokenizer does not mark special leaves no text behind."""
    ids = [int(i) for i in ids]
    if ids and ids[-1] in set(stop_ids):
        ids = ids[:-1]
    text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    if cleans_up(tokenizer):
        text = clean_up_tokenization(text)
    return text.strip()
