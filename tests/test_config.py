import glob
import json
import os

import pytest

from cambrian import config as C

CONFIGS = sorted(os.path.relpath(p, C.CONFIGS_DIR)
                 for p in glob.glob(os.path.join(C.CONFIGS_DIR, "**", "*.py"), recursive=True)
                 if "/eval/" not in p and not p.startswith(os.path.join(C.CONFIGS_DIR, "eval"))
                 and "/tools/" not in p)  # tool configs: tested with their tools


def test_parse_arg_types_and_unknown():
    a = C.parse_arg("runlocal,res=518", runlocal=False, res=336)
    assert a.runlocal is True and a.res == 518 and isinstance(a.res, int)
    with pytest.raises(C.ConfigError, match="unknown config argument 'bogus'"):
        C.parse_arg("bogus", runlocal=False)
    with pytest.raises(C.ConfigError, match="res: expected int"):
        C.parse_arg("res=abc", res=336)


def test_load_resolves_under_configs_and_applies_overrides():
    c = C.load("encoders/dinov2.py:runlocal",
               ["--config.stages.stage2.lr=0.5", "--config.model.encoders.dinov2.image_size=224",
                "--config.eval.vision=both"])
    assert c.name == "encoders/dinov2.py:runlocal"
    assert c.stages.stage2.lr == 0.5 and c.model.encoders.dinov2.image_size == 224
    assert c.eval.vision == "both"


def test_unknown_override_key_is_an_error_naming_it():
    with pytest.raises(C.ConfigError, match="unknown config key 'stages.stage2.lrr'"):
        C.load("encoders/dinov2.py:runlocal", ["--config.stages.stage2.lrr=1"])
    with pytest.raises(C.ConfigError, match="unknown config key 'modle'"):
        C.load("encoders/dinov2.py", ["--config.modle.x=1"])


def test_locked_config_rejects_new_attributes():
    c = C.load("encoders/dinov2.py")
    with pytest.raises(AttributeError, match="foo"):
        c.model.foo = 1


def test_config_that_adds_keys_is_rejected(tmp_path):
    p = tmp_path / "bad.py"
    p.write_text("from cambrian import config as C\n"
                 "def get_config(arg=None):\n"
                 "    c = C.base_config()\n"
                 "    c.model.encoders['x'] = C.encoder('dinov2', 'L/14')\n"
                 "    c.eval.bogus_key = 1\n"
                 "    return c\n")
    with pytest.raises(C.ConfigError, match="eval.bogus_key"):
        C.load(str(p))


def test_missing_config_file():
    with pytest.raises(C.ConfigError, match="config file not found: 'encoders/nope.py'"):
        C.load("encoders/nope.py")


def test_hash_ignores_workdir_but_not_settings():
    a, b = C.load("encoders/dinov2.py"), C.load("encoders/dinov2.py")
    with a.unlocked():
        a.workdir = "/somewhere"
    assert C.config_hash(a) == C.config_hash(b)
    b.seed = 7
    assert C.config_hash(a) != C.config_hash(b)


@pytest.mark.parametrize("name", CONFIGS)
def test_every_shipped_config_builds(name):
    for arg in ("", ":runlocal"):
        c = C.load(name + arg)
        assert c.model.encoders, name
        if arg:
            assert all(e.init == "random" for e in c.model.encoders.values())
            assert c.model.llm.init == "random" and c.eval.suite == "synthetic"
        else:  # the real probe never silently uses random weights
            assert all(e.init == "pretrained" for e in c.model.encoders.values())
            assert c.model.llm.init == "pretrained"


def test_eval_config_adopts_the_model_of_the_run_it_scores(tmp_path):
    run = C.load("encoders/clip.py:runlocal")
    (tmp_path / "config.json").write_text(C.to_json(run))
    c = C.load("eval/cambrian.py:runlocal", [f"--config.checkpoint={tmp_path}"])
    assert not c.model.encoders
    C.adopt_model(c)
    assert list(c.model.encoders) == ["clip"] and c.model.encoders.clip.init == "random"
    assert c.stages.stage2.steps == 0 and c.eval.suite == "synthetic"
    with pytest.raises(C.ConfigError, match="set --config.checkpoint=RUN_DIR"):
        C.adopt_model(C.load("eval/cambrian.py"))


def test_adopting_a_run_saved_before_a_model_key_existed_takes_the_default(tmp_path):
    run = json.loads(C.to_json(C.load("encoders/clip.py:runlocal",
                                      ["--config.model.llm.random.num_layers=3"])))
    del run["model"]["llm"]["attention"]  # as written by an older version
    (tmp_path / "config.json").write_text(json.dumps(run))
    c = C.load("eval/cambrian.py:runlocal", [f"--config.checkpoint={tmp_path}"])
    C.adopt_model(c)
    assert c.model.llm.attention == C.base_config().model.llm.attention
    assert c.model.llm.random.num_layers == 3  # the saved values win


def test_encoders_keep_the_order_they_were_added_in(tmp_path):
    """A ConfigDict iterates its keys sorted (clip, convnext, dinov2, siglip); the SVA's encoder
    0 (its global context) must be SigLIP, the first added, through config.json too."""
    from flax import nnx

    from cambrian.models import vlm

    c = C.load("connectors/sva.py:runlocal")
    want = ["siglip", "clip", "dinov2", "convnext"]
    assert [a for a, _ in C.ordered_encoders(c.model.encoders)] == want
    (tmp_path / "config.json").write_text(C.to_json(c))
    ev = C.load("eval/cambrian.py:runlocal", [f"--config.checkpoint={tmp_path}"])
    C.adopt_model(ev)
    assert [a for a, _ in C.ordered_encoders(ev.model.encoders)] == want
    model = nnx.eval_shape(lambda: vlm.Cambrian(ev.model, vocab_size=32, rngs=nnx.Rngs(0)))
    assert model.order == tuple(want) and model.connector.global_context_encoder == 0
    widths = [model.encoders[a].out_channels for a in want]
    assert [m.linear_1.kernel.shape[0] for m in (
        getattr(model.connector, f"mm_projector_aux_{k}") for k in range(4))] == widths


def test_runs_saved_before_the_encoder_order_keep_their_alias_order(tmp_path):
    run = json.loads(C.to_json(C.load("connectors/sva.py:runlocal")))
    for e in run["model"]["encoders"].values():  # as written before `order` existed
        del e["order"], e["pos_interp"]
    (tmp_path / "config.json").write_text(json.dumps(run))
    c = C.load("eval/cambrian.py:runlocal", [f"--config.checkpoint={tmp_path}"])
    C.adopt_model(c)
    assert [a for a, _ in C.ordered_encoders(c.model.encoders)] == sorted(run["model"]["encoders"])
    assert all(e.pos_interp == "" for e in c.model.encoders.values())


def test_encoder_order_must_be_a_permutation():
    from flax import nnx

    from cambrian.models import vlm

    c = C.load("connectors/sva.py:runlocal", ["--config.model.encoders.clip.order=2"])
    with pytest.raises(C.ConfigError, match=r"order values .*clip=2, dinov2=2.* not 0\.\.3"):
        nnx.eval_shape(lambda: vlm.Cambrian(c.model, vocab_size=32, rngs=nnx.Rngs(0)))
