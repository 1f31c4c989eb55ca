"""CLIP-blind pairs (MMVP, Tong et al., 2024, "Eyes Wide Shut?"), for any two encoders of the zoo.

``python -m cambrian.tools.mmvp {mine,build,patterns}`` (``__main__``) runs the three steps:

* ``mine``: pairs similar under encoder A and different under encoder B (``mine``), written as
  ranked JSONL with thumbnails for review (``thumbnails``);
* ``build``: reviewed pairs with a question, two options and an answer per image -> a folder in
  MMVP's layout that the suite scores with MMVP's pair accuracy (``build``);
* ``patterns``: the nine visual patterns by keyword rules, and pair accuracy per pattern from a
  run's predictions (``patterns``).

Features come from ``cambrian.tools.features`` (batched, sharded, cached), neighbours from
``cambrian.tools.neighbours``.
"""
