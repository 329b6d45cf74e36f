"""Class-balanced selection by predicted class.

A logistic-regression probe trained on the current labels predicts a class for every
candidate. Picks go, one at a time, to the class with the fewest labels so far (labeled
+ picked; ties to the lower class index) among classes that still have candidates
predicted for them; within a class the candidate is drawn at random (seeded). So the
labeled set ends as even as the predictions allow: rare classes are topped up first.
"""

from __future__ import annotations

import numpy as np

from fewlabels.select.base import Picked, Pool, check_budget, classifier_probs


def select(pool: Pool, budget: int, *, seed: int = 0) -> Picked:
    """``budget`` candidates that even out the label counts per predicted class."""
    budget = check_budget(pool, budget)
    probs = classifier_probs(pool, seed, "class-balanced selection")
    k = probs.shape[1]
    cand = pool.candidates
    pred = probs[cand].argmax(1)
    rng = np.random.default_rng([seed, 102])
    queues = [list(rng.permutation(cand[pred == c])) for c in range(k)]
    counts = np.bincount(pool.labels, minlength=k).astype(np.int64)
    picked: list[int] = []
    rest = [int(i) for i in rng.permutation(cand)]  # when no predicted class has candidates
    taken: set[int] = set()
    while len(picked) < budget:
        open_ = [c for c in range(k) if queues[c]]
        if not open_:
            row = next(r for r in rest if r not in taken)
        else:
            c = min(open_, key=lambda c: (counts[c], c))
            row = int(queues[c].pop(0))
            counts[c] += 1
        picked.append(row)
        taken.add(row)
    index = np.asarray(picked, np.int64)
    return Picked(index, score=probs[index].max(1), predicted=probs[index].argmax(1))
