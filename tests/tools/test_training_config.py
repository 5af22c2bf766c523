"""TrainingConfig from the settings and its validation; hyperparameters chosen for the data's size."""

from __future__ import annotations

from typing import Any

import pytest

from genesys.errors import ConfigError, InvalidRequest
from genesys.tools.training.config import TrainingConfig
from genesys.tools.training.hyperparameters import choose_hyperparameters


def test_config_comes_from_the_settings(settings: Any) -> None:
    config = TrainingConfig.from_settings(settings)

    # The seed's TRAINING_CONFIG, as configured.
    assert (config.lora_rank, config.lora_alpha, config.lora_dropout) == (16, 32, 0.1)
    assert (config.batch_size, config.learning_rate, config.epochs) == (4, 2e-4, 3)
    assert (config.gradient_accumulation, config.warmup_steps, config.logging_steps) == (8, 100, 100)
    assert (config.evaluation_strategy, config.eval_steps, config.save_strategy) == ("steps", 500, "epoch")
    assert config.corrective_stage == "none"
    assert config.max_length == settings.data_collection.context_window
    assert TrainingConfig.from_dict(config.to_dict()) == config


def test_settings_choose_the_corrective_stage(settings: Any) -> None:
    settings.training_pipeline.corrective_stage = "dpo"
    assert TrainingConfig.from_settings(settings).corrective_stage == "dpo"
    assert TrainingConfig.from_settings(settings, corrective_stage="kto").corrective_stage == "kto"


def test_settings_choose_the_replay_loss(settings: Any) -> None:
    assert TrainingConfig.from_settings(settings).replay_loss == "ce"
    settings.training_pipeline.replay_loss = "kl"
    assert TrainingConfig.from_settings(settings).replay_loss == "kl"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lora_rank", 0, "lora_rank must be a positive integer"),
        ("batch_size", -1, "batch_size must be a positive integer"),
        ("epochs", 1.5, "epochs must be a positive integer"),
        ("learning_rate", 0.0, "learning_rate must be a finite number > 0"),
        ("learning_rate", float("nan"), "learning_rate must be a finite number > 0"),
        ("learning_rate", 3.0, "far too high"),
        ("lora_dropout", 1.0, r"lora_dropout must be in \[0, 1\)"),
        ("warmup_steps", -5, "warmup_steps must be an integer >= 0"),
        ("evaluation_strategy", "sometimes", "evaluation_strategy must be one of"),
        ("corrective_stage", "ppo", "corrective_stage must be one of"),
        ("loss_on", "everything", "loss_on must be one of"),
        ("target_modules", [], "target_modules must be"),
        ("max_steps", 0, "max_steps must be a positive integer or None"),
    ],
)
def test_config_rejects_bad_values(field: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainingConfig(**{field: value})


def test_config_names_every_problem_and_unknown_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        TrainingConfig(lora_rank=0, epochs=0)
    assert "lora_rank" in str(caught.value) and "epochs" in str(caught.value)
    with pytest.raises(ConfigError, match=r"unknown training config key.*learning_rat"):
        TrainingConfig.from_dict({"learning_rat": 1e-3})


def test_fifteen_rows_get_a_high_rate_many_epochs_and_small_steps(settings: Any) -> None:
    hp = choose_hyperparameters(15, 15 * 60, settings, has_validation=True)

    assert hp.learning_rate == pytest.approx(1e-3)
    assert hp.epochs == 8
    # 4 x 8 rows a step would be under one step per epoch: one row a step, 15 steps an epoch.
    assert (hp.batch_size, hp.gradient_accumulation) == (1, 1)
    assert hp.steps_per_epoch == 15 and hp.total_steps == 120
    # Warm-up is at most 10% of the run, not the configured 100 steps that would never end.
    assert hp.warmup_steps == 12 and hp.warmup_ratio == pytest.approx(0.1)
    assert hp.logging_steps == 6
    assert hp.evaluation_strategy == "steps" and hp.eval_steps == 15
    assert hp.save_strategy == "steps" and hp.save_steps == hp.eval_steps
    assert hp.early_stopping_patience == 2
    reasons = "\n".join(hp.reasons)
    assert "learning rate 0.001 (configured 0.0002) and 8 epochs" in reasons
    assert "warm-up 12 steps (configured 100)" in reasons
    assert "15 rows need at least 8 optimizer steps per epoch" in reasons
    assert "early stopping after 2 evaluations" in reasons


def test_a_validation_set_too_small_to_stop_on_does_not_stop_training(settings: Any) -> None:
    # A 3-fact cycle: one validation row. Its loss is still reported, but it must not end the run.
    few = choose_hyperparameters(15, 15 * 60, settings, has_validation=True, n_validation_rows=1)
    assert few.evaluation_strategy == "steps"
    assert few.early_stopping_patience == 0
    assert few.save_strategy == "epoch"  # as configured: no best checkpoint to keep
    assert any("1 validation rows are too few to stop on" in r for r in few.reasons)

    enough = choose_hyperparameters(15, 15 * 60, settings, has_validation=True, n_validation_rows=8)
    assert enough.early_stopping_patience == 2


def test_five_thousand_rows_keep_the_seed_values(settings: Any) -> None:
    hp = choose_hyperparameters(5000, 5000 * 200, settings, has_validation=True)

    assert (hp.learning_rate, hp.epochs) == (pytest.approx(2e-4), 3)
    assert (hp.batch_size, hp.gradient_accumulation, hp.effective_batch) == (4, 8, 32)
    assert hp.steps_per_epoch == 157 and hp.total_steps == 471
    assert hp.warmup_steps == 48  # 100 configured would be 21% of the run
    assert hp.logging_steps == 23
    # Every 500 steps would never evaluate a 471-step run.
    assert hp.eval_steps == 94
    reasons = "\n".join(hp.reasons)
    assert "learning rate 0.0002 and 3 epochs as configured" in reasons
    assert "validation loss every 94 steps (configured 500)" in reasons


def test_sixty_rows_get_the_measured_setting(settings: Any) -> None:
    hp = choose_hyperparameters(60, 60 * 80, settings)

    assert (hp.learning_rate, hp.epochs) == (pytest.approx(2e-3), 5)
    assert (hp.batch_size, hp.gradient_accumulation, hp.steps_per_epoch) == (4, 1, 15)
    # Without a validation set: no evaluation, no early stopping, and it says so.
    assert hp.evaluation_strategy == "no" and hp.early_stopping_patience == 0
    assert "no validation set" in "\n".join(hp.reasons)


def test_rows_that_share_answers_need_fewer_epochs(settings: Any) -> None:
    # 17 corrections, each asked three ways: 3 rows an answer keep the tier's 5 epochs.
    measured = choose_hyperparameters(51, 51 * 140, settings, n_distinct_answers=17)
    assert measured.epochs == 5
    # The same 17 answers under 11 phrasings each (3 users' and 4 rewrites of each, some removed as
    # near-duplicates): 3 epochs train each about 32 times; the run says why.
    rewritten = choose_hyperparameters(181, 181 * 140, settings, n_distinct_answers=17)
    assert (rewritten.learning_rate, rewritten.epochs) == (pytest.approx(2e-3), 3)
    assert "17 different answers" in "\n".join(rewritten.reasons)
    # Under 200 rows every micro-batch is a step: more updates for the same compute.
    assert (rewritten.batch_size, rewritten.gradient_accumulation, rewritten.steps_per_epoch) == (4, 1, 46)
    assert "no gradient accumulation (configured 8)" in "\n".join(rewritten.reasons)
    # Never fewer than two epochs, and rows with different answers keep the tier's epochs.
    assert choose_hyperparameters(150, 150 * 140, settings, n_distinct_answers=3).epochs == 2
    assert choose_hyperparameters(120, 120 * 140, settings, n_distinct_answers=120).epochs == 5


def test_replay_rows_lengthen_epochs_but_do_not_choose_them(settings: Any) -> None:
    alone = choose_hyperparameters(110, 110 * 140, settings, n_distinct_answers=17)
    replayed = choose_hyperparameters(110, 132 * 140, settings, n_distinct_answers=17, n_replay_rows=22)

    assert (replayed.learning_rate, replayed.epochs) == (alone.learning_rate, alone.epochs)
    assert (alone.steps_per_epoch, replayed.steps_per_epoch) == (28, 33)
    assert "22 replay rows" in "\n".join(replayed.reasons)


def test_a_few_corrections_still_get_enough_steps_to_learn(settings: Any) -> None:
    # Three facts asked three ways plus two rewrites each: 27 rows, 3 answers. The repeated answers
    # alone would give 2 epochs (18 steps, which learned none of them); the run gets at least 60.
    hp = choose_hyperparameters(27, 27 * 140, settings, n_distinct_answers=3, n_replay_rows=8)
    assert hp.total_steps >= 60 and hp.epochs > 2
    assert "at least 60 steps" in "\n".join(hp.reasons)


def test_long_rows_get_smaller_micro_batches_with_more_accumulation(settings: Any) -> None:
    hp = choose_hyperparameters(5000, 5000 * 4000, settings)

    assert hp.batch_size == 2 and hp.gradient_accumulation == 16
    assert "rows average 4000 tokens" in "\n".join(hp.reasons)


def test_several_devices_share_the_steps(settings: Any) -> None:
    hp = choose_hyperparameters(5000, 5000 * 200, settings, n_devices=4)
    assert hp.effective_batch == 4 * 8 * 4
    assert hp.steps_per_epoch == 40


def test_adaptation_can_be_turned_off(settings: Any) -> None:
    config = TrainingConfig.from_settings(settings, adapt_to_data=False)
    hp = choose_hyperparameters(15, 900, config)
    assert (hp.learning_rate, hp.epochs, hp.batch_size, hp.gradient_accumulation) == (2e-4, 3, 4, 8)
    assert "adapt_to_data is off" in hp.reasons[0]
    assert hp.warmup_steps == 1  # still bounded: 100 warm-up steps in a 3-step run would never end


def test_empty_training_set_is_refused(settings: Any) -> None:
    with pytest.raises(InvalidRequest, match="empty"):
        choose_hyperparameters(0, 0, settings)


def test_trl_gets_the_chosen_values_and_neftune_only_when_asked(settings: Any, tmp_path: Any) -> None:
    from genesys.tools.training.sft import sft_arguments

    config = TrainingConfig.from_settings(settings)
    hp = choose_hyperparameters(51, 51 * 140, config, n_distinct_answers=17)
    arguments = sft_arguments(hp, config, tmp_path)
    assert (arguments.learning_rate, arguments.num_train_epochs) == (pytest.approx(2e-3), 5)
    assert arguments.per_device_train_batch_size == 4 and arguments.gradient_accumulation_steps == 1
    assert arguments.neftune_noise_alpha is None
    noisy = TrainingConfig.from_settings(settings, neftune_noise_alpha=5.0)
    assert sft_arguments(hp, noisy, tmp_path).neftune_noise_alpha == 5.0
