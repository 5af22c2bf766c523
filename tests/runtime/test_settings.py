"""Settings: the seed's TRAINING_CONFIG, YAML, environment overrides, unknown keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from genesys.errors import ConfigError
from genesys.runtime.settings import DEFAULT_CONFIG_PATH, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in list(os.environ):
        if var.startswith("GENESYS_"):
            monkeypatch.delenv(var)


def test_the_shipped_config_carries_the_seeds_training_config() -> None:
    settings = load_settings()
    assert DEFAULT_CONFIG_PATH.is_file()
    dc = settings.data_collection
    assert (dc.log_all_interactions, dc.quality_threshold, dc.context_window) == (True, 0.7, 4096)
    assert dc.tag_categories == [
        "coding",
        "debugging",
        "explanation",
        "architecture",
        "optimization",
        "testing",
    ]
    agents = settings.autogen_agents
    assert agents.data_analyst.trigger_threshold == 100
    assert agents.data_curator.filter_criteria == ["relevance", "accuracy", "completeness"]
    lora = agents.trainer_agent.lora_config
    assert lora is not None and (lora.rank, lora.alpha, lora.dropout) == (16, 32, 0.1)
    assert agents.validator_agent.metrics == ["bleu", "rouge", "bertscore", "user_satisfaction"]
    tp = settings.training_pipeline
    assert (tp.batch_size, tp.learning_rate, tp.epochs, tp.gradient_accumulation) == (4, 2e-4, 3, 8)
    assert (tp.warmup_steps, tp.evaluation_strategy, tp.eval_steps) == (100, "steps", 500)
    assert (tp.save_strategy, tp.logging_steps) == ("epoch", 100)
    qg = settings.quality_gates
    assert (qg.minimum_improvement, qg.validation_score_threshold, qg.user_satisfaction_threshold) == (
        0.05,
        0.8,
        0.85,
    )
    assert (qg.a_b_test_duration_hours, qg.rollback_on_degradation) == (24, True)
    assert settings.server.host == "127.0.0.1" and settings.model.engine == "llamacpp"


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENESYS_SERVER__PORT", "8123")
    monkeypatch.setenv("GENESYS_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("GENESYS_QUALITY_GATES__MINIMUM_IMPROVEMENT", "0.1")
    monkeypatch.setenv(
        "GENESYS_AUTH__KEYS", '[{"name": "ci", "role": "admin", "key": "a-real-secret-123456"}]'
    )
    settings = load_settings()
    assert settings.server.port == 8123
    assert settings.data_dir == tmp_path / "d"
    assert settings.quality_gates.minimum_improvement == 0.1
    assert settings.auth.keys[0].role == "admin" and settings.auth_enabled
    assert "a-real-secret" not in repr(settings)  # secrets never reach logs


def test_another_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("model:\n  engine: vllm\n  vllm:\n    base_url: http://127.0.0.1:9999/v1\n")
    monkeypatch.setenv("GENESYS_CONFIG", str(path))
    settings = load_settings()
    assert settings.model.engine == "vllm"
    assert settings.model.vllm.base_url.endswith(":9999/v1")
    assert settings.training_pipeline.epochs == 3  # what the file leaves out keeps its default


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("server:\n  prot: 1\n", "server.prot"),
        ("training_pipeline:\n  learning_rate: -1\n", "training_pipeline.learning_rate"),
        ("surprise: 1\n", "surprise"),
        ("- a list\n", "mapping"),
        ("server: [\n", "not valid YAML"),
        ("auth:\n  keys: [{name: x, key: changeme}]\n", "placeholder"),
        ("auth:\n  keys: [{name: x, key: short}]\n", "16 characters"),
    ],
)
def test_bad_files_are_one_readable_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    monkeypatch.setenv("GENESYS_CONFIG", str(path))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert fragment in str(info.value)
    assert "\n" not in str(info.value).strip()


def test_unknown_environment_keys_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENESYS_SERVR__PORT", "1")
    with pytest.raises(ConfigError, match="GENESYS_SERVR__PORT"):
        load_settings()
    monkeypatch.delenv("GENESYS_SERVR__PORT")
    monkeypatch.setenv("GENESYS_SERVER__PROT", "1")
    with pytest.raises(ConfigError, match=r"server\.prot"):
        load_settings()


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GENESYS_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="not found"):
        load_settings()
