"""Title similarity: TF-IDF cosines against the user's latest titles, the fusion feature of content."""

import numpy as np

from instructrec_batch.retrieval.content import TitleSimilarity

CATALOGUE = [
    "Halo 3 - Xbox 360", "Halo Reach - Xbox 360", "Halo 4 - Xbox 360", "Mario Kart 8 - Wii U",
    "Super Mario Odyssey - Nintendo Switch", "Zelda Breath of the Wild - Nintendo Switch",
    "Forza Horizon 4 - Xbox One", "Gran Turismo Sport - PlayStation 4", "Mario Party - Wii U",
]


def test_a_sequel_of_the_latest_item_scores_highest_and_only_recent_titles_count():
    sim = TitleSimilarity.fit(CATALOGUE, recent=2)
    history = ["Gran Turismo Sport - PlayStation 4", "Mario Kart 8 - Wii U", "Halo 3 - Xbox 360"]
    candidates = ["Halo 4 - Xbox 360", "Super Mario Odyssey - Nintendo Switch", "Gran Turismo Sport - PlayStation 4", None]
    scores = sim.scores(history, candidates)
    assert len(scores) == 4 and scores[3] == 0.0  # an untitled candidate has no evidence
    assert scores[0] > scores[1] > 0.0, "Halo 4 after Halo 3 beats a Switch Mario after a Wii U one"
    assert scores[2] == 0.0, "Gran Turismo is the third latest, outside recent=2"
    assert all(0.0 <= s <= 1.0 and s == round(s, 2) for s in scores)
    assert sim.scores(history, ["Halo 3 - Xbox 360"]) == [1.0]  # the same title: cosine 1


def test_the_cosine_is_the_hand_computed_tf_idf_one():
    sim = TitleSimilarity.fit(CATALOGUE, recent=1)
    vectorizer = sim.vectorizer
    a, b = vectorizer.transform(["Halo Reach - Xbox 360", "Halo 4 - Xbox 360"]).toarray()
    assert np.isclose(np.linalg.norm(a), 1.0)
    assert sim.scores(["Halo Reach - Xbox 360"], ["Halo 4 - Xbox 360"]) == [round(float(a @ b), 2)]


def test_no_history_no_vocabulary_or_recent_zero_give_zeros():
    assert TitleSimilarity.fit(CATALOGUE).scores([], ["Halo 4 - Xbox 360"]) == [0.0]
    assert TitleSimilarity.fit(CATALOGUE, recent=0).scores(["Halo 3 - Xbox 360"], ["Halo 4 - Xbox 360"]) == [0.0]
    empty = TitleSimilarity.fit(["!", "?", None])
    assert empty.vectorizer is None and empty.scores(["!"], ["?", "!"]) == [0.0, 0.0]
    tiny = TitleSimilarity.fit(["Halo", "Zelda"])  # no term in two titles: single-title terms still match
    assert tiny.scores(["Halo"], ["Halo", "Zelda"]) == [1.0, 0.0]


def test_embedding_similarity_is_the_standardised_cosine_of_the_latest_titles():
    from instructrec_batch.retrieval.content import EmbeddingSimilarity

    titles = ["Halo 3", "Halo 4", "Mario Kart", "Forza"]
    vectors = np.array([[1.0, 1.0, 0.0], [1.0, 0.9, 0.1], [1.0, -1.0, 0.0], [1.0, 0.0, 1.0]])
    sim = EmbeddingSimilarity.from_vectors(titles, vectors, recent=1)
    vectors[:, 2] *= 1000  # a dimension of huge magnitude must not decide every cosine
    standard = (vectors - vectors.mean(axis=0)) / np.where(vectors.std(axis=0) > 0, vectors.std(axis=0), 1)
    unit = standard / np.linalg.norm(standard, axis=1, keepdims=True)
    scores = sim.scores(["Mario Kart", "Halo 3"], ["Halo 4", "Mario Kart", "Unknown", None])
    assert scores[:2] == [round(float(unit[1] @ unit[0]), 2), round(float(unit[2] @ unit[0]), 2)]
    assert scores[0] > 0.5 and scores[1] < 0, "a centred cosine says unlike as well as alike"
    assert scores[2:] == [0.0, 0.0], "a title without a vector (or none) has no evidence"
    # The highest over the recent titles; an unknown history title is skipped, not an error.
    wide = EmbeddingSimilarity.from_vectors(titles, vectors, recent=3)
    assert wide.scores(["Halo 3", "Mario Kart", "Nope"], ["Mario Kart"]) == [1.0]
    assert wide.scores(["Nope"], ["Halo 4"]) == [0.0] and wide.scores([], ["Halo 4"]) == [0.0]
    assert EmbeddingSimilarity.from_vectors([], None).scores(["Halo 3"], ["Halo 4"]) == [0.0]
