"""Bad checkpoints fail with errors that name the tensor / file and the expected vs found shape;
loading streams tensors (the checkpoint is never held twice in host memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from cambrian.models import encoders
from cambrian.models.weights import CheckpointError

from .utils import write_hf_dinov2


def test_missing_tensor_is_named(tmp_path):
    name = "encoder.layer.1.attention.attention.key.weight"
    write_hf_dinov2(tmp_path, drop={name})
    with pytest.raises(CheckpointError) as e:
        encoders.load("dinov2", str(tmp_path), variant="runlocal")
    msg = str(e.value)
    assert name in msg and "missing" in msg and "(64, 64)" in msg and str(tmp_path) in msg


def test_misshaped_tensor_names_expected_and_found(tmp_path):
    name = "encoder.layer.0.mlp.fc1.weight"
    write_hf_dinov2(tmp_path, reshape={name: (128, 64)})
    with pytest.raises(CheckpointError) as e:
        encoders.load("dinov2", str(tmp_path), variant="runlocal")
    msg = str(e.value)
    assert name in msg and "(128, 64)" in msg and "(256, 64)" in msg


def test_wrong_variant_is_a_shape_error(tmp_path):
    write_hf_dinov2(tmp_path)
    with pytest.raises(CheckpointError, match=r"has shape \(64,\), expected \(384,\)"):
        encoders.load("dinov2", str(tmp_path), variant="S/14")


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nowhere"):
        encoders.load("clip", str(tmp_path / "nowhere"))


def test_checkpoint_of_another_family(tmp_path):
    write_hf_dinov2(tmp_path)
    with pytest.raises(CheckpointError, match="conv1.weight.*right family"):
        encoders.load("dfn_clip", str(tmp_path), variant="runlocal")


def test_hf_config_without_weights_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 64}))
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        encoders.load("dinov2", str(tmp_path))


def test_unknown_variant_lists_known_ones():
    with pytest.raises(ValueError, match="unknown variant 'XL'.*L/14"):
        encoders.create("dinov2", "XL")


def test_families_are_found_by_module_path():
    assert {"clip", "siglip", "dfn_clip", "eva_clip", "dinov2", "mae", "mocov3", "ijepa", "supvit",
            "convnext", "sam", "dpt", "sd_diffusion", "aimv2"} <= set(encoders.families())
    with pytest.raises(ValueError, match="unknown encoder family 'dinov9'; known: aimv2, clip"):
        encoders.create("dinov9")
    with pytest.raises(ValueError, match="encoders.vit is not an encoder family module: it lacks "
                                         "VARIANTS"):
        encoders.family_module("vit")


def test_layer_out_of_range():
    with pytest.raises(ValueError, match="layer 7 out of range for depth 2"):
        encoders.create("clip", "runlocal", layer=7)


_RSS_SCRIPT = textwrap.dedent("""
    import resource, sys, threading, time
    sys.path.insert(0, {root!r})
    import jax.numpy as jnp
    from cambrian.models import encoders

    def anon_kb():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("RssAnon"))

    enc = encoders.create("dinov2", "runlocal")  # warm up jax and the import graph
    base, peak, done = anon_kb(), [0], []
    def poll():
        while not done:
            peak[0] = max(peak[0], anon_kb())
            time.sleep(0.005)
    t = threading.Thread(target=poll); t.start()
    enc = encoders.load("dinov2", {path!r}, variant={variant!r})
    done.append(1); t.join()
    print(base, max(peak[0], anon_kb()), anon_kb())
""")


def measure_load_rss(path: str, variant: str) -> tuple[int, int, int]:
    """(anonymous RSS before, peak during, after) loading, in KiB, in a fresh process."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT.format(root=root, path=path,
                                                                    variant=variant)],
                         capture_output=True, text=True, check=True)
    return tuple(int(v) for v in out.stdout.split()[-3:])


@pytest.mark.slow
def test_loading_streams_tensors(tmp_path):
    # ViT-B/14-shaped DINOv2 (~86M params, ~350 MB): loading must add about one copy
    write_hf_dinov2(tmp_path, variant="B/14")
    ckpt_kb = os.path.getsize(tmp_path / "model.safetensors") / 1024
    base, peak, _ = measure_load_rss(str(tmp_path), "B/14")
    assert peak - base < 1.35 * ckpt_kb, (base, peak, ckpt_kb)
