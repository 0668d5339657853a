from pathlib import Path

import pytest

from instructrec_batch.config import Config, ConfigError, conf_dir, load_config


@pytest.mark.parametrize("name", sorted(p.name for p in conf_dir().glob("*.yaml") if p.name != "base.yaml"))
def test_every_shipped_config_loads(name):
    cfg = load_config([conf_dir() / name])
    assert isinstance(cfg, Config)


def test_layering_and_overrides_are_typed():
    cfg = load_config(overrides=["scoring.top_k=5", "spark.conf={spark.sql.shuffle.partitions: '4'}"])
    assert cfg.scoring.top_k == 5
    assert cfg.lake.backend == "delta-rs"  # from local.yaml over base.yaml's auto
    assert cfg.spark.conf == {"spark.sql.shuffle.partitions": "4"}


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"scoring\.topk: unknown key"):
        load_config(overrides=["scoring.topk=5"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"retrieval\.n_candidates: .*integer"):
        load_config(overrides=["retrieval.n_candidates=many"])


def test_unknown_key_in_a_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lake:\n  rooot: /x\n")
    with pytest.raises(ConfigError, match=r"lake\.rooot: unknown key"):
        load_config([bad])


def test_config_hash_changes_with_content():
    assert load_config().hash() == load_config().hash()
    assert load_config().hash() != load_config(overrides=["scoring.top_k=3"]).hash()


def test_base_yaml_states_only_the_typed_defaults():
    """conf/base.yaml documents knobs; the typed config owns their values (one truth)."""
    import yaml

    from instructrec_batch.config import Config, conf_dir

    defaults = Config().model_dump(mode="json")

    def leaves(node, prefix=()):
        for key, value in node.items():
            if isinstance(value, dict) and isinstance(defaults_at(prefix + (key,)), dict) and key != "task_mix":
                yield from leaves(value, prefix + (key,))
            else:
                yield prefix + (key,), value

    def defaults_at(path):
        node = defaults
        for key in path:
            node = node[key]
        return node

    base = yaml.safe_load((conf_dir() / "base.yaml").read_text())
    differing = [(".".join(path), value, defaults_at(path)) for path, value in leaves(base) if value != defaults_at(path)]
    assert not differing, f"base.yaml values that differ from the typed defaults (key, yaml, typed): {differing}"


def test_the_retrieved_pool_must_hold_the_shortlist():
    with pytest.raises(ConfigError, match=r"pool_depth \(10\) must be at least n_candidates \(20\)"):
        load_config(overrides=["retrieval.pool_depth=10"])
    assert load_config(overrides=["retrieval.pool_depth=10", "retrieval.n_candidates=10"]).retrieval.pool_depth == 10
