"""The evaluate job (evaluation.job.run) end to end on a tiny lake: every system, the eval_runs table, the report, the card."""

import json

import numpy as np
import pyarrow as pa
import pytest
import yaml

from instructrec_batch.config import load_config
from instructrec_batch.evaluation import job as evaluate_job
from instructrec_batch.lake import Lake
from instructrec_batch.lake.schemas import INTERACTIONS, ITEMS

N_ITEMS = 24


def _write_lake(lake: Lake, n_users: int = 10) -> None:
    """Users walk the catalogue in steps of +1 (a rule SASRec and co-occurrence can learn)."""
    rng = np.random.default_rng(0)
    items = [{"item_id": f"i{i}", "title": f"Game number {i}"} for i in range(N_ITEMS)]
    rows = []
    for u in range(n_users):
        start, length = int(rng.integers(0, N_ITEMS)), int(rng.integers(4, 7))
        rows += [{"user_id": f"u{u}", "item_id": f"i{(start + p) % N_ITEMS}", "position": p} for p in range(length)]
    lake.write_arrow(pa.Table.from_pylist(items, schema=ITEMS.schema), "items", mode="overwrite")
    lake.write_arrow(pa.Table.from_pylist(rows, schema=INTERACTIONS.schema), "interactions", mode="overwrite")


def _small_library(tmp_path) -> str:
    """The shipped library with two reranking templates: one that renders without reviews and intents,
    and a P2 one that falls back to P1 for every user here (so it must be skipped, not credited)."""
    from instructrec_batch.instructions import templates as tmod

    path = tmod.__file__.replace("templates.py", "templates.yaml")
    doc = yaml.safe_load(open(path))
    keep = {"T3-P1I0-b", "T3-P2I0-a"}
    doc["templates"] = [t for t in doc["templates"] if t["task_form"] != "reranking" or t["id"] in keep]
    doc["default_inference"] = "T3-P1I0-b"
    out = tmp_path / "templates.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(out)


def _publish_tiny(cfg, tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from instructrec_batch.model import registry
    from instructrec_batch.model.base import load_causal_lm

    model = get_peft_model(load_causal_lm(tiny_model_dir), LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(str(tmp_path / "adapter"))
    return registry.publish(cfg.model, tmp_path / "adapter", tiny_model_dir, {"note": "test"})


def _cfg(tmp_path, tiny_model_dir, extra=()):
    return load_config(
        overrides=[
            f"lake.root={tmp_path / 'lake'}",
            "lake.backend=delta-rs",
            f"model.registry_dir={tmp_path / 'models'}",
            "model.base.kind=hf_dir",
            f"model.base.path={tiny_model_dir}",
            f"evaluation.report_dir={tmp_path / 'reports'}",
            "evaluation.n_negatives=5",
            "evaluation.llm_users=4",
            "evaluation.template_users=3",
            "retrieval.sequential.epochs=2",
            "retrieval.sequential.dim=16",
            "retrieval.sequential.max_len=8",
            "retrieval.n_candidates=6",
            "retrieval.method=cooccurrence",  # the sasrec baseline is fitted in the job; no published retriever
            "scoring.dtype=fp32",
            "instructions.max_prompt_tokens=400",
            *extra,
        ]
    )


def test_every_system_table_report_and_template_feedback(spark, tmp_path, tiny_model_dir):
    # The LLM path is the same loop for both protocols; the sampled one keeps this test's Spark work
    # small, and the retrieval protocol is covered end to end by the rerun test below.
    cfg = _cfg(
        tmp_path,
        tiny_model_dir,
        # The verbalizer serves here: template feedback then ranks the two reranking templates.
        [f"instructions.templates_path={_small_library(tmp_path)}", "evaluation.protocols=[sampled]",
         "scoring.scorer=verbalizer"],
    )
    lake = Lake(cfg.lake, spark)
    _write_lake(lake)
    version = _publish_tiny(cfg, tiny_model_dir, tmp_path)
    from instructrec_batch.model.fusion import FusionParams
    from instructrec_batch.model.registry import update_card

    # No popularity or similarity term: without the model, the fusion is the retrieval order itself.
    update_card(cfg.model, version.name, version.version, fusion=FusionParams(model_weight=0.5).to_card())

    result = evaluate_job.run(spark, lake, cfg)

    table = result.table
    stored = lake.read_arrow("eval_runs").to_pandas()
    assert len(stored) == len(table) and set(stored["run_id"]) == {result.run_id}
    got = set(zip(table["protocol"], table["system"]))
    for system in ("popularity", "retrieval", "sasrec", "base_zero_shot", "tuned_verbalizer", "tuned_likelihood",
                   "tuned_fused", "fused_without_model"):
        assert ("sampled/llm_sample", system) in got
    sample = table[table.protocol == "sampled/llm_sample"].set_index(["system", "metric"])["value"]
    np.testing.assert_allclose(sample["fused_without_model"].sort_index(), sample["retrieval"].sort_index())
    assert ("sampled/all", "sasrec") in got
    assert ("sampled/all", "base_zero_shot") not in got  # LLM rows only on the sample
    assert set(table.loc[table.protocol == "sampled/llm_sample", "n_users"]) == {4}
    assert set(table.loc[table.protocol == "sampled/all", "metric"]) == {"HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR"}
    assert table["value"].between(0, 1).all()
    assert set(table.loc[table.system == "tuned_verbalizer", "model_version"]) == {f"{cfg.model.name}:{version.version}"}
    assert json.loads(table["input_versions"].iloc[0])["interactions"] == 0
    assert (table["config_hash"] == cfg.hash()).all()

    # Template feedback: the rendering template was scored, the fallback-only one skipped.
    feedback = table[table.protocol == "template_feedback/validation"]
    assert set(feedback.system) == {"verbalizer[T3-P1I0-b]"}
    from instructrec_batch.model.registry import resolve

    card = resolve(cfg.model).card
    assert card["best_template_id"] == result.best_template_id == "T3-P1I0-b"
    assert set(card["template_feedback"]) == {"verbalizer[T3-P1I0-b]"}

    report = result.report_path.read_text()
    assert "## Winners" in report and "sampled protocol, llm_sample" in report
    pngs = sorted(p.name for p in result.report_path.parent.glob("*.png"))
    assert pngs == ["sampled_all.png", "sampled_llm_sample.png"]

    # The model-less fusion alone reads the card and the prompts: no tuned system wanted, no model pass.
    alone = evaluate_job.run(spark, lake, _cfg(tmp_path, tiny_model_dir, [
        f"instructions.templates_path={_small_library(tmp_path)}", "evaluation.protocols=[sampled]",
        "scoring.scorer=verbalizer", "evaluation.systems=[retrieval, fused_without_model]"]))
    rows = alone.table[alone.table.protocol == "sampled/llm_sample"].set_index(["system", "metric"])["value"]
    np.testing.assert_allclose(rows["fused_without_model"].sort_index(), sample["fused_without_model"].sort_index())
    assert set(alone.table.loc[alone.table.system == "fused_without_model", "model_version"]) == {
        f"{cfg.model.name}:{version.version}"}
    assert any(n.startswith("sampled: NDCG@10 fused_without_model - retrieval") for n in alone.notes)


def test_seeded_rerun_gives_identical_numbers(spark, tmp_path, tiny_model_dir):
    cfg = _cfg(tmp_path, tiny_model_dir, ["evaluation.systems=[popularity, retrieval, sasrec]"])
    lake = Lake(cfg.lake, spark)
    _write_lake(lake)
    first = evaluate_job.run(spark, lake, cfg)
    second = evaluate_job.run(spark, lake, cfg)
    cols = ["protocol", "system", "metric", "value", "n_users"]
    assert first.run_id != second.run_id
    assert first.table[cols].equals(second.table[cols])
    assert len(lake.read_arrow("eval_runs")) == 2 * len(first.table)  # appended, nothing replaced
    got = set(zip(first.table["protocol"], first.table["system"]))
    assert {("retrieval/all", "retrieval"), ("retrieval/llm_sample", "sasrec"), ("sampled/all", "popularity"),
            ("sampled/all", "retrieval")} <= got
    # The sampled candidates in the retrieval stage's order: a target at retrieval rank r has at most r - 1
    # sampled negatives before it, so per user (and on average) NDCG@10 is at least the retrieval protocol's.
    rows = first.table.set_index(["protocol", "system", "metric"])["value"]
    assert rows["sampled/all", "retrieval", "NDCG@10"] >= rows["retrieval/all", "retrieval", "NDCG@10"] - 1e-9
    metrics = set(first.table.loc[first.table.protocol == "retrieval/all", "metric"])
    assert {"Recall@10", "Recall@20", "NDCG@10", "NDCG@20"} <= metrics
    pngs = sorted(p.name for p in first.report_path.parent.glob("*.png"))
    assert pngs == ["retrieval_all.png", "retrieval_llm_sample.png", "sampled_all.png", "sampled_llm_sample.png"]


def test_pick_template_takes_the_best_and_breaks_ties_by_id():
    from instructrec_batch.evaluation.job import pick_template

    assert pick_template({"T3-b": 0.2, "T3-a": 0.1}) == "T3-b"
    assert pick_template({"T3-b": 0.2, "T3-a": 0.2}) == "T3-a"


def test_the_sasrec_row_is_the_published_retriever_when_retrieval_serves_one(spark, tmp_path, tiny_model_dir):
    """With retrieval.method=merged the nightly serves a published SASRec; the evaluation's SASRec row is
    that model (no second fit), and a retriever that saw the test items is refused for it."""
    from instructrec_batch.retrieval.sequential import fit_retriever, publish_retriever

    def run_with(holdout: int) -> str:
        cfg = _cfg(tmp_path / f"h{holdout}", tiny_model_dir, [
            "retrieval.method=merged", f"retrieval.sequential.fit_holdout={holdout}",
            "evaluation.systems=[popularity, retrieval, sasrec]", "evaluation.protocols=[sampled]"])
        lake = Lake(cfg.lake, spark)
        _write_lake(lake)
        frame = lake.read_arrow("interactions").to_pandas().sort_values(["user_id", "position"])
        sequences = frame.groupby("user_id")["item_id"].agg(list).to_dict()
        fitted = fit_retriever(sequences, [f"i{i}" for i in range(N_ITEMS)], cfg.retrieval.sequential)
        publish_retriever(cfg.model.registry_dir, cfg.retrieval.sequential, fitted, {"data_versions": {}})
        result = evaluate_job.run(spark, lake, cfg)
        assert ("sampled/all", "sasrec") in set(zip(result.table["protocol"], result.table["system"]))
        return result.report_path.read_text()

    served = run_with(holdout=2)
    assert "the published retriever sasrec-games/v0001 (fit_holdout 2" in served
    assert "sasrec load" in served and "sasrec train" not in served
    assert "sampled: candidates ordered as the retrieval stage would (merged" in served
    saw_tests = run_with(holdout=0)
    assert "SASRec: fitted here, the published retriever cannot serve" in saw_tests and "sasrec train" in saw_tests
    # The retriever saw the test items: it cannot order them, and the sampled rows say so.
    assert "sampled: candidates not ordered by retrieval" in saw_tests
