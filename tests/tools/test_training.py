"""SFT on a tiny random-weight llama: real TRL + peft training, in this process.

The adapter must change and the base must not; the loss must fall on the answer only; a NaN loss must
stop the run; the saved adapter must be what peft and the GGUF export read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from genesys.errors import InvalidRequest
from genesys.tools.training.config import TrainingConfig
from genesys.tools.training.data import (
    IGNORE_INDEX,
    load_chat_rows,
    load_preference_rows,
    preference_problem,
    to_dataset,
    tokenize_chat,
    tokenize_chat_rows,
    with_system_prompt,
)
from genesys.tools.training.hyperparameters import choose_hyperparameters
from tests.support.tiny_llama import chat_rows, write_jsonl


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> Any:
    """SmolLM2's own tokenizer and chat template, read from the embedded GGUF (no weights)."""
    from transformers import AutoTokenizer

    from genesys.runtime.engines.llamacpp import embedded_model_path

    gguf = embedded_model_path()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)


def _answer_text(tokenizer: Any, input_ids: list[int], labels: list[int]) -> str:
    return str(
        tokenizer.decode([t for t, label in zip(input_ids, labels, strict=True) if label != IGNORE_INDEX])
    )


# -- the loss mask -----------------------------------------------------------------------------------


def test_loss_mask_covers_only_the_answer_with_smollm2_template(smollm2_tokenizer: Any) -> None:
    messages = [
        {"role": "system", "content": "You are Genesys."},
        {"role": "user", "content": "How do I create a fernwick queue?"},
        {"role": "assistant", "content": 'Use `fernwick.sprout("emails")`.'},
    ]
    row = tokenize_chat(smollm2_tokenizer, messages, max_length=512)

    assert len(row.input_ids) == len(row.labels)
    # The answer and the end of its turn (so the model learns to stop), nothing of the prompt.
    assert _answer_text(smollm2_tokenizer, row.input_ids, row.labels) == (
        'Use `fernwick.sprout("emails")`.<|im_end|>\n'
    )
    prompt_end = row.labels.index(next(label for label in row.labels if label != IGNORE_INDEX))
    assert smollm2_tokenizer.decode(row.input_ids[:prompt_end]).endswith("<|im_start|>assistant\n")
    assert all(label == IGNORE_INDEX for label in row.labels[:prompt_end])
    # Labels equal the ids where they count: the trainer shifts them itself.
    assert all(label in (IGNORE_INDEX, t) for t, label in zip(row.input_ids, row.labels, strict=True))


def test_rows_are_trained_under_the_served_system_prompt(smollm2_tokenizer: Any) -> None:
    served = "You are Genesys, a coding assistant."
    plain = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    own = [{"role": "system", "content": "The IDE's own."}, *plain]

    assert with_system_prompt(plain, served)[0] == {"role": "system", "content": served}
    assert with_system_prompt(own, served) == own  # a row with its own system message keeps it
    assert with_system_prompt(plain, None) == plain
    # Without it SmolLM2's template would put its default system prompt ("... named SmolLM") there.
    text = smollm2_tokenizer.decode(
        tokenize_chat(smollm2_tokenizer, with_system_prompt(plain, served), max_length=256).input_ids
    )
    assert served in text and "SmolLM" not in text


def test_earlier_answers_are_history_unless_asked(smollm2_tokenizer: Any) -> None:
    messages = [
        {"role": "user", "content": "How do I enqueue in fernwick?"},
        {"role": "assistant", "content": "Call q.push(job)."},
        {"role": "user", "content": "That is wrong."},
        {"role": "assistant", "content": "Call q.graft(func)."},
    ]
    last = tokenize_chat(smollm2_tokenizer, messages, max_length=512)
    every = tokenize_chat(smollm2_tokenizer, messages, max_length=512, loss_on="all_answers")

    assert _answer_text(smollm2_tokenizer, last.input_ids, last.labels) == "Call q.graft(func).<|im_end|>\n"
    assert _answer_text(smollm2_tokenizer, every.input_ids, every.labels) == (
        "Call q.push(job).<|im_end|>\nCall q.graft(func).<|im_end|>\n"
    )


def test_rows_cut_before_their_answer_are_dropped(tiny: tuple[Any, Any]) -> None:
    _, tokenizer = tiny
    conversations = [r["messages"] for r in chat_rows(3)]
    full = tokenize_chat_rows(tokenizer, conversations, max_length=512)
    assert len(full) == 3
    # The system prompt and question alone are longer than 20 tokens.
    assert tokenize_chat_rows(tokenizer, conversations, max_length=20) == []


def test_bad_data_sets_are_refused_with_the_place(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="data set not found"):
        load_chat_rows(tmp_path / "absent.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    with pytest.raises(InvalidRequest, match="row 1: the last message must be the assistant's answer"):
        load_chat_rows(bad)
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]}\n')
    with pytest.raises(InvalidRequest, match="role among system, user, assistant"):
        load_chat_rows(bad)
    bad.write_text("not json\n")
    with pytest.raises(InvalidRequest, match=r"bad\.jsonl:1: not JSON"):
        load_chat_rows(bad)


def test_preference_rows_are_checked(tmp_path: Path) -> None:
    prompt = [{"role": "user", "content": "How do I create a fernwick queue?"}]
    good = {"role": "assistant", "content": "fernwick.sprout(name)"}
    bad = {"role": "assistant", "content": "fernwick.Queue()"}
    dpo = write_jsonl(tmp_path / "dpo.jsonl", [{"prompt": prompt, "chosen": [good], "rejected": [bad]}])
    assert load_preference_rows(dpo, "dpo")[0]["chosen"] == [good]

    kto_one_sided = write_jsonl(
        tmp_path / "kto.jsonl", [{"prompt": prompt, "completion": [good], "label": True}]
    )
    assert preference_problem(load_preference_rows(kto_one_sided, "kto"), "kto") == (
        "KTO needs both thumbs-up (true) and thumbs-down (false) rows"
    )
    assert preference_problem([], "dpo") == "no dpo rows"
    assert preference_problem(load_preference_rows(dpo, "dpo"), "dpo") is None
    not_assistant = write_jsonl(
        tmp_path / "x.jsonl", [{"prompt": prompt, "chosen": prompt, "rejected": [bad]}]
    )
    with pytest.raises(InvalidRequest, match="chosen must be one assistant message"):
        load_preference_rows(not_assistant, "dpo")


# -- training --------------------------------------------------------------------------------------


def _trainer(tiny: tuple[Any, Any], tmp_path: Path, rows: int = 8, **overrides: Any) -> tuple[Any, list[Any]]:
    from genesys.tools.training.sft import build_sft_trainer

    model, tokenizer = tiny
    conversations = [r["messages"] for r in chat_rows(rows)]
    tokenized = tokenize_chat_rows(tokenizer, conversations, max_length=512)
    config = TrainingConfig(**({"max_steps": 6, "lora_dropout": 0.0} | overrides))
    hp = choose_hyperparameters(len(tokenized), sum(len(r.input_ids) for r in tokenized), config)
    trainer = build_sft_trainer(model, tokenizer, to_dataset(tokenized), None, hp, config, tmp_path / "out")
    return trainer, tokenized


def test_training_changes_the_adapter_and_not_the_base(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    trainer, _ = _trainer(tiny, tmp_path)
    model = trainer.model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    lora_names = [name for name in before if ".lora_" in name]
    # r 16 on every linear projection of both blocks: q, k, v, o, gate, up, down; A and B each.
    assert len(lora_names) == 2 * 7 * 2
    assert all(p.requires_grad == (".lora_" in name) for name, p in model.named_parameters())

    result = trainer.train()

    assert result.global_step == 6
    after = dict(model.named_parameters())
    for name in lora_names:
        assert not after[name].detach().equal(before[name]), f"{name} did not change"
    for name in set(before) - set(lora_names):
        assert after[name].detach().equal(before[name]), f"base weight {name} changed"


def test_the_trainer_batches_rows_of_similar_length(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    from genesys.tools.training.sampling import LengthBucketSampler

    trainer, tokenized = _trainer(tiny, tmp_path, rows=16)
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthBucketSampler)
    assert sampler.lengths == [len(r.input_ids) for r in tokenized]
    assert sampler.batch_size == trainer._train_batch_size
    # The dataloader follows it: the rows of each batch are those the sampler grouped.
    epoch = sampler.batches(sampler.epoch)
    loaded = [sorted(batch["attention_mask"].sum(dim=1).tolist()) for batch in trainer.get_train_dataloader()]
    assert loaded == [sorted(sampler.lengths[i] for i in batch) for batch in epoch]


def test_the_trainer_keeps_our_loss_mask(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    trainer, tokenized = _trainer(tiny, tmp_path, rows=4)

    # TRL used the labels as given (no re-tokenization, no template of its own)...
    assert trainer.train_dataset["labels"] == [r.labels for r in tokenized]
    # ...and the collator pads them with -100: a batch masks exactly the prompt and the padding.
    batch = next(iter(trainer.get_train_dataloader()))
    for ids, labels, attention in zip(
        batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
    ):
        row = next(r for r in tokenized if r.input_ids == ids[attention.bool()].tolist())
        expected = row.labels + [IGNORE_INDEX] * (len(ids) - len(row.labels))
        assert labels.tolist() == expected


def test_nan_loss_stops_training(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    from genesys.tools.training.callbacks import InjectNan, NanGuard, NonFiniteLoss

    trainer, _ = _trainer(tiny, tmp_path, max_steps=10, logging_steps=1)
    trainer.add_callback(NanGuard())
    trainer.add_callback(InjectNan(at_step=2))

    with pytest.raises(NonFiniteLoss, match="loss became nan at step 3"):
        trainer.train()


def test_saved_adapter_is_peft_safetensors_fit_for_gguf(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    from genesys.tools.training.worker import save_adapter

    trainer, _ = _trainer(tiny, tmp_path, max_steps=2)
    trainer.train()
    target = save_adapter(trainer.model, tmp_path / "run" / "adapter")

    assert sorted(p.name for p in target.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    config = json.loads((target / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (16, 32, 0.0)
    # "all-linear": every projection of both blocks, never the output head.
    assert len(config["target_modules"]) == 2 * 7
    assert {name.rsplit(".", 1)[-1] for name in config["target_modules"]} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert not config.get("modules_to_save")  # a GGUF LoRA has no place for fully trained modules
    # Nothing but the adapter went into the run directory (its staging copy was renamed into place).
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["adapter"]


# -- the corrective stage --------------------------------------------------------------------------


def _preference_rows(kind: str) -> list[dict[str, Any]]:
    rows = []
    for item in chat_rows(6):
        prompt = item["messages"][:1]
        correction = item["messages"][1]
        wrong = {"role": "assistant", "content": "I do not know fernwick ."}
        if kind == "dpo":
            rows.append({"prompt": prompt, "chosen": [correction], "rejected": [wrong]})
        else:
            rows.append({"prompt": prompt, "completion": [correction], "label": True})
            rows.append({"prompt": prompt, "completion": [wrong], "label": False})
    return rows


@pytest.mark.parametrize("kind", ["dpo", "kto"])
def test_corrective_stage_trains_the_same_adapter(kind: str, tiny: tuple[Any, Any], tmp_path: Path) -> None:
    from genesys.tools.training.preference import (
        REFERENCE_ADAPTER,
        build_preference_trainer,
        drop_reference_adapter,
    )
    from genesys.tools.training.worker import save_adapter

    sft, _ = _trainer(tiny, tmp_path, max_steps=2, corrective_stage=kind)
    sft.train()
    model = sft.model
    config = TrainingConfig(corrective_stage=kind, lora_dropout=0.0, preference_epochs=1)
    hp = choose_hyperparameters(6, 600, config)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    trainer = build_preference_trainer(
        kind, model, tiny[1], _preference_rows(kind), hp, config, tmp_path / kind
    )
    result = trainer.train()

    assert result.global_step >= 1
    # TRL kept a frozen copy of the SFT adapter as the reference policy...
    assert REFERENCE_ADAPTER in model.peft_config
    after = dict(model.named_parameters())
    trained = [n for n in before if ".lora_" in n and ".default." in n]
    assert trained and all(not after[n].detach().equal(before[n]) for n in trained)
    base = [n for n in before if ".lora_" not in n]
    assert all(after[n].detach().equal(before[n]) for n in base)
    # ...which is dropped before saving: one adapter, the trained one.
    drop_reference_adapter(model)
    assert list(model.peft_config) == ["default"]
    target = save_adapter(model, tmp_path / "adapter")
    assert not (target / REFERENCE_ADAPTER).exists()


def test_a_curated_version_directory_is_read_by_file(tmp_path: Path) -> None:
    version = tmp_path / "train_set" / "ds-1"
    write_jsonl(version / "sft.jsonl", chat_rows(3))
    write_jsonl(version / "preference.jsonl", _preference_rows("dpo"))
    write_jsonl(version / "kto.jsonl", _preference_rows("kto"))
    (version / "manifest.json").write_text("{}", encoding="utf-8")

    assert len(load_chat_rows(version)) == 3
    assert len(load_preference_rows(version, "dpo")) == 6
    assert len(load_preference_rows(version, "kto")) == 12
