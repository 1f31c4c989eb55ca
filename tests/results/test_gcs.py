"""Runs read from a bucket: a real gcsfs client against the local fake GCS server."""

import os

import pandas as pd

from cambrian.results import frames, runs


def test_load_and_rescore_runs_from_gcs(gcs, data_dir):
    for name in ("dinov2_mlp", "sva_4tower"):
        gcs.put_dir(os.path.join(data_dir, name), f"sweep/{name}")
    gcs.put_bytes("sweep/unfinished/config.json", b"{}")  # no report.json yet: not a run
    remote = runs.load(gcs.url("sweep/*"))
    assert [r.path for r in remote] == [gcs.url("sweep/dinov2_mlp"), gcs.url("sweep/sva_4tower")]
    assert [r.path for r in runs.load(gcs.url("sweep"))] == [r.path for r in remote]

    local = runs.load([os.path.join(data_dir, n) for n in ("dinov2_mlp", "sva_4tower")])
    cols = [c for c in frames.SCORE_COLUMNS if c != "path"]
    pd.testing.assert_frame_equal(frames.scores(remote)[cols], frames.scores(local)[cols])
    pd.testing.assert_frame_equal(frames.curves(remote), frames.curves(local))
    pd.testing.assert_frame_equal(frames.attention(remote), frames.attention(local))

    again = runs.rescored(remote[0], "cambrian")  # predictions downloaded from the bucket
    assert {k: v["score"] for k, v in again.report["benchmarks"].items()} == {
        k: v["score"] for k, v in local[0].report["benchmarks"].items()}
