"""Content similarity of each candidate to the user's latest items, from item titles alone.

A candidate's title similarity is its highest cosine with the user's ``recent`` latest history titles,
in TF-IDF space (word 1- and 2-grams, sublinear term frequency, terms found in at least two titles)
fitted on the catalogue's titles. Its embedding similarity is the same highest cosine between the
titles' vectors from the base language model (``model/embeddings.py`` computes them), each dimension
standardised over the catalogue: a language model's mean-pooled states share a large common direction
and a few dimensions of huge magnitude, which would otherwise make every pair look alike (measured on
validation users: raw centred vectors added nothing over TF-IDF, standardised ones did; README,
"Two-stage ranking"). Both are features of score fusion (``model/fusion.py``): the
retrieval stage ranks by who bought what, and says nothing of "this is the next game of the series
the user just played"; titles do, without a model pass over the user's prompt (README, "Two-stage
ranking", for what each adds).

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
        recent = latest_titles(history_titles, self.recent)
        if self.vectorizer is None or not recent or not len(candidate_titles):
            return [0.0] * len(candidate_titles)
        vectors = self.vectorizer.transform(recent + [t or "" for t in candidate_titles])
        # TfidfVectorizer rows are L2-normalised: the dot product is the cosine.
        cosine = (vectors[len(recent):] @ vectors[: len(recent)].T).toarray().max(axis=1)
        return [round(float(c), DECIMALS) for c in cosine]


def latest_titles(history_titles: Sequence[str | None], recent: int) -> list[str]:
    """The titled items among the user's ``recent`` latest (the history is oldest first)."""
    return [t for t in list(history_titles)[-recent:] if t] if recent else []


@dataclass(frozen=True)
class EmbeddingSimilarity:
    """Standardised, L2-normalised title vectors (float16: the cosines are served to 2 decimals, and the
    object travels to every Spark task that renders prompts) and the row of each title."""

    rows: dict[str, int]
    vectors: np.ndarray
    recent: int

    @classmethod
    def from_vectors(cls, titles: Sequence[str], vectors: np.ndarray | None, recent: int = 5) -> "EmbeddingSimilarity":
        if vectors is None or not len(titles):
            return cls({}, np.zeros((0, 0), np.float16), recent)
        vectors = np.asarray(vectors, dtype=np.float64)
        spread = vectors.std(axis=0)
        standard = (vectors - vectors.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
        norms = np.linalg.norm(standard, axis=1, keepdims=True)
        unit = np.where(norms > 0, standard / np.where(norms > 0, norms, 1.0), 0.0)
        return cls({t: i for i, t in enumerate(titles)}, unit.astype(np.float16), recent)

    def scores(self, history_titles: Sequence[str | None], candidate_titles: Sequence[str | None]) -> list[float]:
        """Per candidate, its highest cosine with the last ``recent`` history titles' vectors, rounded
        to ``DECIMALS``, in [-1, 1]; 0 for a title without a vector (untitled, or added after the
        vectors were computed) or a user without one in the recent history."""
        recent = [self.rows[t] for t in latest_titles(history_titles, self.recent) if t in self.rows]
        if not recent or not len(candidate_titles):
            return [0.0] * len(candidate_titles)
        known = [self.rows.get(t) if t else None for t in candidate_titles]
        found = [i for i, r in enumerate(known) if r is not None]
        out = np.zeros(len(candidate_titles))
        if found:
            candidates = self.vectors[[known[i] for i in found]].astype(np.float32)
            out[found] = (candidates @ self.vectors[recent].astype(np.float32).T).max(axis=1)
        return [round(float(c), DECIMALS) + 0.0 for c in out]
