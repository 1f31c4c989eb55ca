import pytest


@pytest.fixture(scope="session")
def release_tokenizers(tmp_path_factory):
    """{"llama3" | "llama2": (directory, tokenizer, special ids)}: the tiny tokenizers of the
    release fixtures (Llama-3 / Vicuna special tokens and tokenizer configs)."""
    from cambrian.data import tokenizer as tokenizer_lib
    from tests.release import fixtures

    out = {}
    for style in ("llama3", "llama2"):
        d = str(tmp_path_factory.mktemp(style))
        ids = fixtures.write_tokenizer(d, style)
        out[style] = (d, tokenizer_lib.load(d), ids)
    return out
