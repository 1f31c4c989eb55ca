"""The model's side of guided visual search: scoring crops, answering with the found crops.

* ``YesScorer``: ``score_fn`` for ``vstar.run``: the model's probability of "Yes" (vs "No") as the
  next token after "Is there a {target} in the image? Answer yes or no." on each crop, batched
  in fixed-size batches (one compiled program).
* ``memory_batch``: the visual working memory: the global image plus up to K found crops, each
  through the same towers + connector, their tokens in one run of image slots (K+1 images per row,
  as ``vlm.Cambrian.prepare`` reads packed rows). Rows with fewer crops pad them with an image
  letter-boxed away whole, whose tokens are masked out of attention and take no positions, so a
  row with no crops decodes as the plain single-image prompt.
* ``SearchDecoder``: the eval runner's decoder for search benchmarks (``SEARCH = True``):
  search, answer from memory, save each item's trace in its prediction record (``"search"``).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from cambrian.data import chat_templates, conversation
from cambrian.eval import decoded, runner
from cambrian.models.encoders.preprocess import stack
from cambrian.tools import vstar

QUESTION = "Is there a {target} in the image? Answer yes or no."
# V*Bench's two question forms name their targets; other prompts fall back to eval.vstar.target.
_TARGET_PATTERNS = (
    re.compile(r"Is the (.+?) on the (?:left or right|right or left|left|right) side of the "
               r"(.+?)\?"),
    re.compile(r"What is the (?:colou?r|material|shape) of the (.+?)\?"))


def targets_of(item: dict, default: str) -> list[str]:
    """The target names of one item: its ``targets`` (V*Bench annotations), else those its
    question names, else ``[default]`` (``eval.vstar.target``)."""
    if item.get("targets"):
        return [str(t) for t in item["targets"]]
    for pat in _TARGET_PATTERNS:
        m = pat.search(item["prompt"])
        if m:
            return list(m.groups())
    if not default:
        raise ValueError(f"item {item.get('id')!r}: no target names (no 'targets' field and the "
                         "question names none); set --config.eval.vstar.target=NAME")
    return [default]


def reply_split(tokenizer, template, system, yes: tuple[str, ...], no: tuple[str, ...]
                ) -> tuple[list[int], list[int], list[int]]:
    """(shared reply prefix ids, yes ids, no ids): the replies as the template renders and the
    tokenizer splits them (a byte-level BPE may start both with a lone space token); the answer
    is read at the first token where "Yes" and "No" differ."""
    prompt = conversation.tokenize_segments(
        tokenizer, template.render([("user", "x")], add_generation_prompt=True, system=system),
        0)[0]

    def reply(word: str) -> list[int]:
        full = conversation.tokenize_segments(
            tokenizer, template.render([("user", "x"), ("assistant", word)], system=system), 0)[0]
        if full[:len(prompt)] != prompt:
            raise ValueError(f"template {template.name}: the reply {word!r} changes the "
                             "tokens of the prompt; cannot score yes/no")
        return full[len(prompt):]

    a, b = reply(yes[0]), reply(no[0])
    n = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    prefix = a[:n]
    ids = [sorted({r[n] for r in map(reply, words) if r[:n] == prefix and len(r) > n})
           for words in (yes, no)]
    return prefix, ids[0], ids[1]


class YesScorer:
    """``(crops, targets) -> float[N]``: P("Yes") of the model for each (crop, target)."""

    def __init__(self, decoder: runner._Decoder):
        self.d = decoder
        c = decoder.config
        self.template = chat_templates.get(c.model.template)
        self.system = c.model.system_prompt
        self.prefix, self.yes, self.no = reply_split(decoder.tokenizer, self.template,
                                                     self.system, ("Yes", "yes"), ("No", "no"))
        graphdef = decoder.graphdef
        yes, no = jnp.asarray(self.yes), jnp.asarray(self.no)

        def p_yes(state, batch):
            logits, _ = nnx.merge(graphdef, state)(batch, packed=False)
            last = logits[:, -1].astype(jnp.float32)  # prompts are left-padded
            ly = jax.nn.logsumexp(last[:, yes], axis=-1)
            ln = jax.nn.logsumexp(last[:, no], axis=-1)
            return jax.nn.sigmoid(ly - ln)

        self._p_yes = jax.jit(p_yes)
        self.calls: list[int] = []  # crops per call (batching is checked by the tests)

    def __call__(self, crops: list[np.ndarray], targets: list[str]) -> np.ndarray:
        self.calls.append(len(crops))
        d, bs = self.d, self.d.config.eval.batch_size
        out = []
        for i in range(0, len(crops), bs):
            prompts = [np.concatenate([conversation.encode_prompt(
                QUESTION.format(target=t), self.template, d.tokenizer, d.num_image_tokens,
                system=self.system), np.asarray(self.prefix, np.int32)])
                for t in targets[i:i + bs]]
            batch = runner.make_batch(prompts, crops[i:i + bs], d.host_images, bs)
            out.append(np.asarray(jax.device_get(self._p_yes(d.state, batch)))[:len(prompts)])
        return np.concatenate(out) if out else np.zeros((0,), np.float32)


def memory_batch(prompts: list[np.ndarray], images: list[np.ndarray],
                 crops: list[list[np.ndarray]], k: int, host_images, batch_size: int) -> dict:
    """Rows of the global image + up to ``k`` crops (packed rows, ``host_images``: the model's
    ``host_images()``): ``image`` {alias: uint8[B, 1+k, S, S, 3]}, ``letterbox`` int32[B, 1+k,
    G, 2]; an absent crop is letter-boxed away whole (every row of every grid padding)."""
    batch = runner.make_batch(prompts, images, host_images, batch_size)
    absent = host_images.empty()
    absent["letterbox"] = np.asarray([(0, s) for s in host_images.sides], np.int32)
    rows = []
    for r in range(batch_size):
        cs = crops[r][:k] if r < len(crops) else []
        rows.append([host_images(c) for c in cs] + [absent] * (k - len(cs)))
    extra = stack([stack(row) for row in rows]) if k else None
    image = {a: x[:, None] for a, x in batch["image"].items()}
    letterbox = batch["letterbox"][:, None]
    if extra is not None:
        image = {a: np.concatenate([x, extra["image"][a]], axis=1) for a, x in image.items()}
        letterbox = np.concatenate([letterbox, extra["letterbox"]], axis=1)
    return {**batch, "image": image, "letterbox": letterbox}


class SearchDecoder:
    """Wraps the runner's decoder: search, then answer with the visual working memory."""

    def __init__(self, decoder: runner._Decoder):
        self.d = decoder
        self.scorer = YesScorer(decoder)

    def __call__(self, todo: list[dict], *, vision: bool, max_new_tokens: int, writer,
                 desc: str) -> None:
        if not vision:  # nothing to search: the plain prompts
            return self.d(todo, vision=vision, max_new_tokens=max_new_tokens, writer=writer,
                          desc=desc)
        d, v = self.d, self.d.config.eval.vstar
        template = chat_templates.get(d.config.model.template)
        k, bs = v.max_crops, d.config.eval.batch_size
        stop_ids = runner._stop_ids(d.tokenizer, template)
        generate = runner._generate_fn(d.graphdef, max_new_tokens, stop_ids, True)
        settings = vstar.Settings.from_config(v)
        mine = todo[jax.process_index()::jax.process_count()]
        for i in tqdm(range(0, len(mine), bs), desc=desc, leave=False,
                      disable=jax.process_index() != 0):
            items = mine[i:i + bs]
            searches = vstar.search_items(
                [s["image"] for s in items], [targets_of(s, v.target) for s in items],
                self.scorer, settings, mode=v.mode, trigger=v.trigger)
            crops = [[vstar.crop(s.image, s.result) for s in ss if s.result]
                     for ss in searches]
            prompts = [conversation.encode_prompt(
                s["prompt"], template, d.tokenizer, d.num_image_tokens * (1 + k),
                system=d.config.model.system_prompt) for s in items]
            batch = memory_batch(prompts, [s["image"] for s in items], crops, k,
                                 d.host_images, bs)
            toks, lens = jax.device_get(generate(d.state, batch))
            new = []
            for r, (item, ss) in enumerate(zip(items, searches)):
                rec = {key: val for key, val in item.items() if key != "image"}
                rec["prediction"] = decoded.prediction_text(d.tokenizer, toks[r, :lens[r]],
                                                            stop_ids)
                rec["search"] = [s.trace() for s in ss]
                new.append(rec)
            writer.add(new)
