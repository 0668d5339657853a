"""Title embeddings: mean hidden states over real tokens, whatever the batch, cached on disk by title."""

import numpy as np
import pytest


def test_a_title_embeds_the_same_alone_or_padded_in_a_batch(tiny_model_dir):
    import torch

    from instructrec_batch.model.base import load_causal_lm, load_tokenizer
    from instructrec_batch.model.embeddings import embed_titles

    model, tokenizer = load_causal_lm(tiny_model_dir), load_tokenizer(tiny_model_dir)
    titles = ["Halo 3 - Xbox 360 Limited Collector's Edition", "Forza", "Mario Kart 8 Deluxe"]
    batched = embed_titles(titles, model, tokenizer, layers=[0, 2], batch_size=3)
    assert batched[2].shape == (3, 32) and batched[2].dtype == np.float32
    for i, title in enumerate(titles):
        alone = embed_titles([title], model, tokenizer, layers=[0, 2])
        np.testing.assert_allclose(batched[2][i], alone[2][0], atol=1e-5)
    # Layer 0 is the token embeddings: the mean over the title's token ids, by hand.
    ids = tokenizer("Forza", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = model.get_input_embeddings()(ids)[0].mean(0).numpy()
    np.testing.assert_allclose(batched[0][1], expected, atol=1e-6)


def test_vectors_are_cached_by_title_and_only_new_titles_are_embedded(tiny_model_dir, tmp_path, monkeypatch):
    from instructrec_batch.config import load_config
    from instructrec_batch.model import embeddings

    cfg = load_config(overrides=[f"model.cache_dir={tmp_path}", "model.base.kind=hf_dir",
                                 f"model.base.path={tiny_model_dir}", "instructions.title_embedding_layer=-1"])
    first = embeddings.title_vectors(["Halo 3", "Forza", None, "Halo 3"], cfg)
    assert sorted(first) == ["Forza", "Halo 3"]
    embedded = []
    real = embeddings.embed_titles
    monkeypatch.setattr(embeddings, "embed_titles", lambda titles, *a, **k: embedded.append(list(titles)) or real(titles, *a, **k))
    again = embeddings.title_vectors(["Forza", "Halo 3", "Zelda"], cfg)
    assert embedded == [["Zelda"]], "cached titles are not embedded again"
    np.testing.assert_array_equal(again["Forza"], first["Forza"])
    sim = embeddings.embedding_similarity(["Forza", "Halo 3", "Zelda"], cfg)
    assert embedded == [["Zelda"]] and sim.scores(["Forza"], ["Forza", "Halo 3"])[0] == 1.0
    # The last layer named from the start reads the same cache; past the last layer is a clear error.
    cfg.instructions.title_embedding_layer = 2
    assert embeddings.title_vectors(["Zelda"], cfg)["Zelda"].tolist() == again["Zelda"].tolist() and len(embedded) == 1
    cfg.instructions.title_embedding_layer = 3
    with pytest.raises(ValueError, match="title_embedding_layer=3"):
        embeddings.title_vectors(["Zelda"], cfg)
