"""Web-SSL's VQA protocol (Fan, Tong et al. 2025, arXiv 2504.01017): one frozen Web-SSL tower ->
2-layer MLP -> Llama-3-8B-Instruct, trained in two stages and scored on Cambrian-1's benchmarks,
so their scaling table can be rerun tower by tower.

    python launch/tpu.py --config encoders/webssl_protocol.py:runlocal --workdir runs/webssl-local
    python launch/tpu.py --config encoders/webssl_protocol.py:model=dino7b,v5p-128 \
        --workdir gs://BUCKET/runs/webssl-dino7b
    python launch/tpu.py --config encoders/webssl_protocol.py:model=mae1b,v5p-128 ...

Args: model=NAME -- the tower, a ``webssl`` variant: dino300m, dino1b, dino2b, dino3b, dino5b,
dino7b, dino7b@378, dino7b@518, dino2b-light, dino2b-heavy, dino3b-light, dino3b-heavy (the
text-rich MC-2B filters), mae300m, mae700m, mae1b, mae2b, mae3b, mae7b (checkpoint: its hub repo
under $CAMBRIAN_CHECKPOINTS, below); res=N -- input resolution (default: the checkpoint's);
runlocal; v4-8|v4-128|v5p-128 (cambrian/slices.py).

Stated by Web-SSL (project page davidfan.io/webssl, public summaries of the paper's Section 2):
VQA on Cambrian-1's 16 benchmarks in four groups (General, Knowledge, OCR & Chart,
Vision-Centric), the tower frozen, a fixed Llama-3 8B, towers at their pretraining resolution
(224 px = 256 tokens at patch 14; the 378 / 518 px 7B checkpoints for high resolution). Features:
all patch tokens of the last layer, as the released demos (``demo_webdino.py``) extract them.
Carried over from Cambrian-1-8B's released recipe (cambrian/release/config.py, since Web-SSL
follows Cambrian-1's training) and NOT checked against the Web-SSL paper's appendix, which this
config could not read: stage 1 = connector on Cambrian-Alignment (2.5M), stage 2 = connector +
LLM on Cambrian-7M, batch 512, LR 1e-3 / 4e-5, the llama_3 chat template, bf16 compute. Check
those against the paper before quoting a number as a reproduction of its table.
"""

import os

from cambrian import config as C
from cambrian.release import config as release

# variant -> hub repo (facebookresearch/webssl README)
CHECKPOINTS = {
    **{f"dino{s}": f"facebook/webssl-dino{s}-full2b-224" for s in ("300m", "1b", "2b", "3b", "5b")},
    "dino7b": "facebook/webssl-dino7b-full8b-224",
    "dino7b@378": "facebook/webssl-dino7b-full8b-378",
    "dino7b@518": "facebook/webssl-dino7b-full8b-518",
    **{f"dino{s}-{d}": f"facebook/webssl-dino{s}-{d}2b-224"
       for s in ("2b", "3b") for d in ("light", "heavy")},
    **{f"mae{s}": f"facebook/webssl-mae{s}-full2b-224"
       for s in ("300m", "700m", "1b", "2b", "3b", "7b")},
}


def get_config(arg=None):
    a = C.probe_arg(arg, model="dino7b", res=0)
    if a.model not in CHECKPOINTS:
        raise C.ConfigError(f"webssl_protocol.py: model={a.model!r} is not a released Web-SSL "
                            f"tower; pick one of {', '.join(CHECKPOINTS)}")
    c = C.encoder_probe("webssl", C.encoder(
        "webssl", a.model, image_size=a.res,
        checkpoint=os.path.join(C.CHECKPOINTS, CHECKPOINTS[a.model])))
    # Cambrian-1-8B's LLM, template, data and stages, with the MLP connector of encoder_probe
    cambrian_8b = release.recipe("8b", None)
    for key in ("llm", "tokenizer", "template", "max_len", "dtype", "encoder_dtype"):
        c.model[key] = cambrian_8b.model[key]
    c.stages = cambrian_8b.stages
    c.stages.stage1.lr_multipliers = {}  # no SVA to slow down
    if a.runlocal:
        C.runlocal_common(c)
        c.model.dtype = c.model.encoder_dtype = "float32"
    C.apply_slice(c, a)
    return c
