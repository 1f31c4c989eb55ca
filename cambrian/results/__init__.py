"""Many runs -> one table, the paper's reference rows beside them, and the comparison figures.

    from cambrian.results import figures, frames, reference, runs, tables

    loaded = runs.load("gs://bucket/sweep/*")            # run folders, by folder or glob
    scores = frames.scores(loaded)                       # one row per run x benchmark
    both = pd.concat([reference.scores("encoder_sweep"), scores])
    tables.ranked(both); figures.group_bars(both)

``python -m cambrian.results compare RUN... --out figs/`` draws the same figures without Jupyter.
"""
