"""Guided visual search (V*, Wu & Xie 2023): find a small target in a high-resolution image.

The search is greedy descent over overlapping quadrants, batched across items: at each step every
unfinished search splits its current box into four children (each ``(1 + overlap) / 2`` of the
parent's side, anchored at the parent's corners, so a target on a seam is whole in some child),
all children of all searches are scored in ONE call of ``score_fn``, and each search moves into its
best child. A search stops when a child's score reaches ``threshold`` (found), at ``max_depth``,
when the next children would be under ``min_size`` pixels, or when it has scored ``budget``
crops; its result is the box it ended in (``None`` if it never descended). Deterministic: ties
go to the first child (top-left, top-right, bottom-left, bottom-right). A ``threshold`` above 1
never stops a search early.

``score_fn(crops, targets) -> float[N]`` scores crop i for target i (higher = more likely there):
with a model, the probability of "Yes" to "Is there a {target} in the image?"
(``vstar_model.YesScorer``); in tests, an independent oracle.

Boxes are pixel ``[x0, y0, x1, y1]`` (ints, x1/y1 exclusive) of the original image. The trace of
one search (``Search.trace()``) is what the predictions file keeps and ``results.trace`` draws.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

ScoreFn = Callable[[list[np.ndarray], list[str]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Settings:
    """The bounds of one search (``eval.vstar`` fields of the same names)."""

    threshold: float
    max_depth: int
    budget: int
    overlap: float
    min_size: int

    @classmethod
    def from_config(cls, c) -> Settings:
        return cls(threshold=c.threshold, max_depth=c.max_depth, budget=c.budget,
                   overlap=c.overlap, min_size=c.min_size)


def quadrants(box: Sequence[int], overlap: float) -> list[list[int]]:
    """The four overlapping children of ``box``: TL, TR, BL, BR."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cw = min(w, int(round(w * (1 + overlap) / 2)))
    ch = min(h, int(round(h * (1 + overlap) / 2)))
    return [[x0, y0, x0 + cw, y0 + ch], [x1 - cw, y0, x1, y0 + ch],
            [x0, y1 - ch, x0 + cw, y1], [x1 - cw, y1 - ch, x1, y1]]


def crop(image: np.ndarray, box: Sequence[int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


@dataclasses.dataclass
class Search:
    """One target's search in one image."""

    image: np.ndarray  # uint8[H, W, 3]
    target: str
    box: list[int] = dataclasses.field(default_factory=list)  # current box
    steps: list[dict] = dataclasses.field(default_factory=list)
    score: float | None = None  # of the current box
    scored: int = 0
    depth: int = 0
    done: bool = False
    found: bool = False
    global_score: float | None = None

    def __post_init__(self):
        h, w = self.image.shape[:2]
        self.box = self.box or [0, 0, w, h]

    def children(self, s: Settings) -> list[list[int]]:
        """Next boxes to score, or [] (the search is then finished)."""
        if self.done:
            return []
        kids = quadrants(self.box, s.overlap)
        side = min(kids[0][2] - kids[0][0], kids[0][3] - kids[0][1])
        if (self.depth >= s.max_depth or self.scored + len(kids) > s.budget
                or side < s.min_size or kids[0] == self.box):
            self.done = True
            return []
        return kids

    def update(self, kids: list[list[int]], scores: np.ndarray, s: Settings) -> None:
        i = int(np.argmax(scores))  # first of equal maxima: deterministic
        self.steps.append({"depth": self.depth + 1, "boxes": kids,
                           "scores": [round(float(x), 6) for x in scores], "chosen": i})
        self.scored += len(kids)
        self.depth += 1
        self.box, self.score = kids[i], float(scores[i])
        if scores[i] >= s.threshold:
            self.done = self.found = True

    @property
    def result(self) -> list[int] | None:
        """The box the search ended in; None if it never descended."""
        return self.box if self.steps else None

    def trace(self) -> dict:
        h, w = self.image.shape[:2]
        return {"target": self.target, "image_size": [w, h], "global_score": self.global_score,
                "steps": self.steps, "box": self.result,
                "score": None if self.score is None else round(self.score, 6),
                "found": self.found, "scored": self.scored}


def run(searches: list[Search], score_fn: ScoreFn, settings: Settings) -> list[Search]:
    """Runs every search to its end; each step scores all pending children in one call."""
    while True:
        pending = [(s, s.children(settings)) for s in searches]
        pending = [(s, kids) for s, kids in pending if kids]
        if not pending:
            return searches
        crops = [crop(s.image, b) for s, kids in pending for b in kids]
        targets = [s.target for s, kids in pending for _ in kids]
        scores = np.asarray(score_fn(crops, targets), np.float64)
        if scores.shape != (len(crops),):
            raise ValueError(f"score_fn returned shape {scores.shape} for {len(crops)} crops; "
                             "expected one score per crop")
        k = 0
        for s, kids in pending:
            s.update(kids, scores[k:k + len(kids)], settings)
            k += len(kids)


def search_items(images: list[np.ndarray], targets: list[list[str]], score_fn: ScoreFn,
                 settings: Settings, *, mode: str = "always", trigger: float = 0.5
                 ) -> list[list[Search]]:
    """Searches every target of every item; returns the searches per item.

    mode: ``"always"`` searches every target; ``"when_unresolved"`` first scores the whole image
    for each target (one batched call) and searches only targets scoring below ``trigger``;
    ``"off"`` searches nothing.
    """
    if mode not in ("always", "when_unresolved", "off"):
        raise ValueError(f"eval.vstar.mode = {mode!r}; expected always, when_unresolved or off")
    per_item = [[Search(img, t) for t in ts] for img, ts in zip(images, targets)]
    flat = [s for item in per_item for s in item]
    if mode == "off":
        for s in flat:
            s.done = True
    elif mode == "when_unresolved" and flat:
        scores = np.asarray(score_fn([s.image for s in flat], [s.target for s in flat]))
        for s, g in zip(flat, scores):
            s.global_score = round(float(g), 6)
            s.done = bool(g >= trigger)
    run(flat, score_fn, settings)
    return per_item
