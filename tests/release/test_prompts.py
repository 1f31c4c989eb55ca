"""Our eval prompt ids against upstream's, on each release's own (tiny) tokenizer.

``conversation.encode_prompt`` is what the eval runner feeds the model; the reference renders
upstream's ``conv_templates[conv_mode].get_prompt()`` and runs ``tokenizer_image_token``.
"""

import pytest

from cambrian.data import chat_templates, conversation
from tests.release import fixtures
from tests.release import torch_reference as ref

pytestmark = pytest.mark.parity

QUESTIONS = ["What is it?", "How many dogs are there?\nAnswer the question using a single word "
             "or phrase."]


@pytest.mark.parametrize("kind", list(fixtures.KINDS))
def test_eval_prompt_ids_match_upstream(references, releases, kind):
    r = references[kind]
    template = chat_templates.get(fixtures.KINDS[kind].conv_mode)
    for q in QUESTIONS:
        ours = conversation.encode_prompt(q, template, r.tokenizer, num_image_tokens=1)
        assert conversation.IMAGE_TOKEN == ref.IMAGE_TOKEN_INDEX
        assert ours.tolist() == r.prompt_ids(q), (kind, q)
    # where the in-LLM aggregator reads (config.image_position) is where our image lands
    assert list(ours).index(conversation.IMAGE_TOKEN) == releases[kind].config["image_position"]
