"""Two JAX processes x 2 CPU devices (gloo) evaluate the synthetic suite like one process.

Each process decodes its share of every benchmark's remaining items into its own part file;
process 0 merges them. The run is first stopped in the middle of the second benchmark (both
processes, as a preempted job is), then resumed: the merged prediction files must equal the
one-process run's byte for byte, and no item may be decoded twice.
"""

import collections
import json
import os
import sys

import pytest

from cambrian.eval import suite
from tests.conftest import start_processes, wait_processes

LIMIT, BATCH = 5, 2  # 5 items: 3 + 2 per benchmark, so the hosts run different batch counts
NAMES = [b.NAME for b in suite.get("synthetic")]


def _config(cache_dir):
    from cambrian import config as C
    from tests.conftest import small

    cfg = small(C.load("encoders/dinov2.py:runlocal"), cache_dir)
    cfg.eval.limit, cfg.eval.max_new_tokens, cfg.eval.batch_size = LIMIT, 6, BATCH
    return cfg


@pytest.mark.multihost
def test_two_processes_split_the_suite_and_resume(cache_dir, tmp_path):
    from cambrian.data import tokenizer
    from cambrian.eval import runner
    from cambrian.train import build_model

    wd = str(tmp_path / "multi")
    procs = start_processes("tests.eval.test_runner_multihost",
                            [[cache_dir, wd, str(tmp_path / f"out{i}.json")] for i in range(2)],
                            devices=2)

    cfg, tok = _config(cache_dir), tokenizer.load("synthetic")
    ref_wd = str(tmp_path / "ref")
    ref = runner.evaluate(build_model(cfg, tok), cfg, tok, ref_wd)

    wait_processes(procs)
    out = [json.load(open(tmp_path / f"out{i}.json")) for i in range(2)]

    # Stopped inside the second benchmark: the first is merged, the second has one part per host.
    first, second = NAMES[0], NAMES[1]
    assert out[0]["after_stop"] == {f"{first}.jsonl": LIMIT,
                                    f"{second}.jsonl.part0-of-2": BATCH,
                                    f"{second}.jsonl.part1-of-2": BATCH}
    # Hand-derived shares: every 2nd item of the remaining ones, in batches of 2; after the stop
    # only 1 item of the second benchmark is left (host 1 gets none), the first is not redone.
    want = {"stopped": [{first: 3, second: 2}, {first: 2, second: 2}],
            "resumed": [{second: 1, NAMES[2]: 3, NAMES[3]: 3}, {NAMES[2]: 2, NAMES[3]: 2}]}
    for phase, per_host in want.items():
        assert [o["decoded"][phase] for o in out] == per_host, phase
    total = collections.Counter()
    for o in out:
        for phase in want:
            total.update(o["decoded"][phase])
    assert total == {n: LIMIT for n in NAMES}  # each item decoded exactly once

    files = sorted(os.listdir(os.path.join(ref_wd, "predictions")))
    assert files == [f"{n}.jsonl" for n in sorted(NAMES)]
    assert sorted(os.listdir(os.path.join(wd, "predictions"))) == files  # no parts left
    for f in files:
        got = open(os.path.join(wd, "predictions", f)).read()
        assert got == open(os.path.join(ref_wd, "predictions", f)).read(), f
        assert len(got.splitlines()) == LIMIT

    def scores(r):
        return {k: {f: v for f, v in b.items() if f != "seconds"} for k, b in r.items()}

    assert scores(out[0]["results"]) == scores(out[1]["results"]) == scores(ref)


class _Stop(Exception):
    pass


def _worker(port: str, pid: str, cache_dir: str, workdir: str, out: str) -> None:
    import jax
    import numpy as np
    from flax import nnx
    from jax.experimental import multihost_utils

    from cambrian import distributed, sharding
    from cambrian.data import tokenizer
    from cambrian.eval import predictions, runner
    from cambrian.train import build_model

    distributed.initialize(f"localhost:{port}", 2, int(pid))
    cfg, tok = _config(cache_dir), tokenizer.load("synthetic")
    # As after training: the parameters are sharded over the devices of both processes.
    graphdef, params = nnx.split(build_model(cfg, tok))
    cfg.mesh.update(dict(data=1, fsdp=-1, tensor=1))
    mesh = sharding.make_mesh(cfg.mesh)
    params = jax.tree.map(lambda v, s: v.replace(sharding.put_host_array(np.asarray(v[...]), s)),
                          params, sharding.state_shardings(params, mesh, "fsdp"),
                          is_leaf=lambda x: isinstance(x, nnx.Variable))
    assert any(not x.is_fully_addressable and not x.sharding.is_fully_replicated
               for x in jax.tree.leaves(params))
    model = nnx.merge(graphdef, params)

    decoded = {"stopped": collections.Counter(), "resumed": collections.Counter()}
    phase = "stopped"
    add = predictions.Writer.add

    def counting_add(self, records):
        name = os.path.basename(self.path).split(".")[0]
        add(self, records)
        decoded[phase][name] += len(records)
        if phase == "stopped" and name == NAMES[1]:
            raise _Stop  # both processes, after their first batch of the second benchmark

    predictions.Writer.add = counting_add
    try:
        runner.evaluate(model, cfg, tok, workdir)
        raise AssertionError("the first run was meant to stop")
    except _Stop:
        pass
    multihost_utils.sync_global_devices("stopped")
    pred = os.path.join(workdir, "predictions")
    after_stop = {f: len(open(os.path.join(pred, f)).read().splitlines())
                  for f in sorted(os.listdir(pred))}
    multihost_utils.sync_global_devices("listed")
    phase = "resumed"
    results = runner.evaluate(model, cfg, tok, workdir)
    with open(out, "w") as fh:
        json.dump({"decoded": decoded, "after_stop": after_stop, "results": results}, fh)
    jax.distributed.shutdown()


if __name__ == "__main__":
    _worker(*sys.argv[1:6])
