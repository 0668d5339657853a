"""Content similarity of each candidate to the user's latest items, from item titles alone.

A candidate's title similarity is its highest cosine with the user's ``recent`` latest history titles,
in TF-IDF space (word 1- and 2-grams, sublinear term frequency, terms found in at least two titles)
fitted on the catalogue's titles. It is a feature of score fusion (``model/fusion.py``): the retrieval
stage ranks by who bought what, and says nothing of "this is the next game of the series the user just
played"; titles do, without a model pass (README, "Two-stage ranking", for what it adds).

scikit-learn's ``TfidfVectorizer`` rather than a hand-written tokenizer: it is the reference
implementation of exactly this weighting, and its tokenisation is the same in the prompts stage
(serving) as in the evaluate job, which both call ``TitleSimilarity.scores``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# Served similarities are rounded: the catalogue's term weights move a little whenever items are added,
# and the prompts row's fingerprint (instructions/prompts.py) must not change for every user with them.
DECIMALS = 2


@dataclass(frozen=True)
class TitleSimilarity:
    """A fitted TF-IDF over catalogue titles; ``vectorizer`` None when the titles hold no shared term
    (a tiny catalogue): every similarity is then 0."""

    vectorizer: object | None
    recent: int

    @classmethod
    def fit(cls, titles: Iterable[str | None], recent: int = 5) -> "TitleSimilarity":
        from sklearn.feature_extraction.text import TfidfVectorizer

        documents = [t for t in titles if t]
        for min_df in (2, 1):  # a catalogue too small for shared terms still gets word matches
            vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=min_df, dtype=np.float32)
            try:
                vectorizer.fit(documents)
                return cls(vectorizer, recent)
            except ValueError:  # empty vocabulary: no title has a word (or none shares one)
                continue
        log.warning("title similarity: %d titles have no usable words; the feature is 0 for everyone", len(documents))
        return cls(None, recent)

    def scores(self, history_titles: Sequence[str | None], candidate_titles: Sequence[str | None]) -> list[float]:
        """Per candidate, its highest cosine with the last ``recent`` history titles (oldest first),
        rounded to ``DECIMALS``; 0 for an untitled candidate or a user without titled history."""
        recent = [t for t in list(history_titles)[-self.recent:] if t] if self.recent else []
        if self.vectorizer is None or not recent or not len(candidate_titles):
            return [0.0] * len(candidate_titles)
        vectors = self.vectorizer.transform(recent + [t or "" for t in candidate_titles])
        # TfidfVectorizer rows are L2-normalised: the dot product is the cosine.
        cosine = (vectors[len(recent):] @ vectors[: len(recent)].T).toarray().max(axis=1)
        return [round(float(c), DECIMALS) for c in cosine]
