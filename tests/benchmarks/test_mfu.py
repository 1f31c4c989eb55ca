"""benchmarks/mfu.py: the FLOP formula against hand counts, and a whole run at toy size on CPU."""

import importlib.util
import json
import os
import sys

import pytest

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "mfu.py")
_spec = importlib.util.spec_from_file_location("bench_mfu", PATH)
mfu = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = mfu  # dataclasses look their module up there
_spec.loader.exec_module(mfu)


def test_llm_flops_match_a_hand_count():
    # 1 layer, D 8, 2 query heads + 1 kv head of 4, MLP 16, vocab 32; 2 sequences of 4 tokens.
    d = mfu.Dims(D=8, L=1, H=2, K=1, E=4, F=16, V=32)
    # forward FLOPs of one token, matmul by matmul (2 per multiply-add):
    #   q 2*8*8=128, k 2*8*4=64, v 64, o 2*8*8=128, gate/up/down 3*2*8*16=768, logits 2*8*32=512
    per_token = 128 + 64 + 64 + 128 + 768 + 512
    # causal attention over 4 tokens: 1+2+3+4 = 10 (query, key) pairs; per pair and head
    # q.k 2*4 and p*v 2*4 FLOPs, 2 heads
    attention = 10 * (8 + 8) * 2
    forward = 4 * per_token + attention  # one sequence
    got = mfu.model_flops(d, batch=2, seq=4)
    assert got["llm_dense"] == 3 * 2 * 4 * per_token
    assert got["llm_attention"] == 3 * 2 * attention
    assert got["total"] == 3 * 2 * forward == 41856
    assert got["vit"] == got["connector"] == 0


def test_vision_flops_match_a_hand_count():
    # ViT: width 4, 1 block, MLP 8, patch 2, 2x2 patches + CLS; connector 4 -> 8 -> 8; 2 images.
    d = mfu.Dims(D=8, L=1, H=2, K=1, E=4, F=16, V=32, C=4, depth=1, M=8, M1=8, P=2, n_patch=4,
                 n_prefix=1)
    # frozen ViT, forward only, per image: per token q, k, v, o 4*2*4*4=128, fc1 2*4*8=64,
    # fc2 64 -> 256 * 5 tokens; patch embedding 2*(2*2*3)*4=96 * 4 patches; attention over
    # 5x5 pairs, q.k and p*v 2*4 each (all heads together)
    vit = 256 * 5 + 96 * 4 + 25 * (8 + 8)
    # trained connector, per patch token: 2*4*8 + 2*8*8 forward, x3 with the backward pass
    conn = 3 * (64 + 128) * 4
    got = mfu.model_flops(d, batch=2, seq=4)
    assert got["vit"] == 2 * vit == 4128
    assert got["connector"] == 2 * conn == 4608
    assert got["total"] == 41856 + 4128 + 4608


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_tiny_run_on_cpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OUT", str(tmp_path))
    res = mfu.main(["--tiny", "--steps", "2", "--warmup", "1",
                    "--configs", "2:bogus:xla,2:dots:xla"])
    line = _last_json(capsys.readouterr().out)
    assert line == json.loads(json.dumps(res))
    assert json.loads((tmp_path / "mfu.json").read_text()) == line
    for key in ("mfu", "mfu_vs_measured_matmul", "step_s", "tokens_per_s", "config", "device",
                "tried"):
        assert key in line
    bad, good = line["tried"]
    assert "bogus" in bad["error"] and "step_s" not in bad  # one failure does not stop the run
    assert good["step_s"] > 0 and "error" not in good
    assert line["config"] == {"batch": 2, "remat": "dots", "attention": "xla", "loss_chunk": 0,
                              "seq_len": 64}
    assert line["step_s"] == good["step_s"] and line["mfu_vs_measured_matmul"] > 0
    assert line["tokens_per_s"] == pytest.approx(2 * 64 / good["step_s"], rel=1e-2)
    # Trained parameters, counted by hand for the tiny model (tied embeddings, so no lm_head):
    # LLM: embedding 512*64; per layer q 64*64, k and v 64*32, o 64*64, gate/up/down 3*64*128,
    # two norms 2*64; final norm 64. Connector: 64*64+64 and 64*64+64, newline 64.
    llm = 512 * 64 + 2 * (4096 + 2 * 2048 + 4096 + 3 * 64 * 128 + 128) + 64
    assert line["model"]["trained_params"] == llm + 2 * (64 * 64 + 64) + 64
    # 4x4 patches + a newline per row
    assert line["model"]["image_tokens"] == 20


def test_budget_stops_new_configs(capsys):
    res = mfu.main(["--tiny", "--budget-s", "0"])
    assert res["tried"] == [] and res["mfu"] is None
    assert res["skipped"] == ["2:dots:xla:0 (budget)", "2:dots:xla:16 (budget)"]
    assert _last_json(capsys.readouterr().out)["skipped"] == res["skipped"]


def test_configs_parse_with_and_without_loss_chunk():
    assert mfu.parse_configs("16:none:cudnn:512,8:dots:cudnn_mask,") == [
        (16, "none", "cudnn", 512), (8, "dots", "cudnn_mask", 0)]


@pytest.mark.parametrize("kind,peak", [("NVIDIA H100 80GB HBM3", 989e12),
                                       ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H200", 989e12),
                                       ("cpu", None)])
def test_device_peak(kind, peak):
    assert mfu.device_peak(kind, None) == peak
    assert mfu.device_peak(kind, 500.0) == 500e12
