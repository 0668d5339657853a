"""Ingest from real files: the bundled sample, Amazon 2023 JSONL, and a generic CSV mapping."""

import deltalake

from instructrec_batch.config import GenericSource, load_config
from instructrec_batch.ingest import job as ingest_job, load_sources
from instructrec_batch.ingest.job import SAMPLE_DIR


def test_games_sample_keeps_order_as_position(spark):
    cfg = load_config(overrides=["ingest.sources=[games_sample]", "ingest.max_users=null"])
    items, inter, intents, _ = load_sources(spark, cfg)
    first = SAMPLE_DIR.joinpath("games_sequences.tsv").read_text().splitlines()[1].split("\t")
    asin = {line.split("\t")[0]: line.split("\t")[1] for line in SAMPLE_DIR.joinpath("games_items.tsv").read_text().splitlines()[1:]}
    rows = inter.where(f"user_id = '{first[1]}'").orderBy("position").collect()
    assert [r.item_id for r in rows] == [asin[i] for i in first[2].split()]
    assert [r.position for r in rows] == list(range(len(rows)))
    assert intents.count() == 0
    # Titles arrive HTML-escaped in the source file; the lake holds the text a person reads.
    titles = dict(items.select("item_id", "title").collect())
    assert titles["B0050SYUSU"] == "Rabbids: Alive & Kicking"
    assert not [t for t in titles.values() if t and ("&amp;" in t or "&reg;" in t or "&#39;" in t)]


def test_reviews_jsonl_become_interactions_with_text(spark):
    cfg = load_config(overrides=["ingest.sources=[reviews_sample]", "ingest.max_users=null"])
    items, inter, _, _ = load_sources(spark, cfg)
    row = inter.where("review_text is not null").orderBy("user_id", "position").first()
    assert row.rating is not None and row.event_ts is not None
    # positions follow time within each user
    by_user = {}
    for r in inter.select("user_id", "position", "event_ts").collect():
        by_user.setdefault(r.user_id, []).append((r.position, r.event_ts))
    for rows in by_user.values():
        rows.sort()
        assert [t for _, t in rows] == sorted(t for _, t in rows)
    assert items.where("title is not null").count() > 0


def test_generic_csv_mapping_builds_a_lake(spark, tmp_path, cfg):
    (tmp_path / "movies.csv").write_text("movieId,name,genre\n1,Heat,Crime\n2,Up,Animation\n3,Alien,Horror\n")
    (tmp_path / "ratings.csv").write_text("uid,movieId,stars,ts\n7,2,4.5,1700000100\n7,1,5.0,1700000000\n8,3,2.0,1700000050\n")
    source = GenericSource(
        format="csv",
        items_path=str(tmp_path / "movies.csv"),
        interactions_path=str(tmp_path / "ratings.csv"),
        items_columns={"item_id": "movieId", "title": "name", "category": "genre"},
        interactions_columns={"user_id": "uid", "item_id": "movieId", "rating": "stars", "event_ts": "ts"},
        timestamp_unit="s",
    )
    cfg.ingest.sources = ["generic"]
    cfg.ingest.generic = source
    from instructrec_batch.lake import Lake

    lake = Lake(cfg.lake, spark)
    result = ingest_job.run(spark, lake, cfg)
    assert result["rows"]["items"] == 3 and result["rows"]["interactions"] == 3
    table = deltalake.DeltaTable(lake.path("interactions")).to_pyarrow_table().to_pylist()
    user7 = sorted((r["position"], r["item_id"]) for r in table if r["user_id"] == "7")
    assert user7 == [(0, "1"), (1, "2")]  # ordered by timestamp, not by file order
    assert result["quarantine"].count() == 0


def test_generic_mapping_errors_name_the_column(spark, tmp_path, cfg):
    import pytest

    from instructrec_batch.errors import InstructRecError

    (tmp_path / "i.csv").write_text("id,name\n1,x\n")
    (tmp_path / "r.csv").write_text("u,i,t\n1,1,5\n")
    cfg.ingest.sources = ["generic"]
    cfg.ingest.generic = GenericSource(
        items_path=str(tmp_path / "i.csv"), interactions_path=str(tmp_path / "r.csv"),
        items_columns={"item_id": "id", "title": "title_col"},
        interactions_columns={"user_id": "u", "item_id": "i", "event_ts": "t"},
    )
    with pytest.raises(InstructRecError, match="column 'title_col' \\(mapped to items.title\\) not found; found: id, name"):
        load_sources(spark, cfg)


def test_a_games_title_missing_from_the_file_stays_null_for_validation(spark, tmp_path):
    from instructrec_batch.ingest.amazon_games import read_games

    (tmp_path / "items.tsv").write_text("item_id\tasin\ttitle\n1\tA1\tMegaman &amp; Bass\n2\tA2\t\n")
    (tmp_path / "sequences.tsv").write_text("user_id\treviewerID\titem_ids\n1\tU1\t1 2\n")
    items, _ = read_games(spark, str(tmp_path / "items.tsv"), str(tmp_path / "sequences.tsv"))
    assert dict(items.select("item_id", "title").collect()) == {"A1": "Megaman & Bass", "A2": None}
