"""A tiny random-weight llama model with a tiny word-level tokenizer, saved as a Hugging Face model dir.

Training on it takes milliseconds a step, so tests can run real TRL/peft training without the real
model. The tokenizer splits on whitespace and punctuation, knows the words of the Fernwick scenario,
and has SmolLM2's ChatML chat template, so chat rows render and mask as they do for SmolLM2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SCENARIO = Path(__file__).resolve().parents[1] / "data" / "fernwick_scenario.jsonl"
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "[UNK]"]


def scenario_items() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SCENARIO.read_text(encoding="utf-8").splitlines() if line.strip()]


def chat_rows(n: int | None = None, *, phrasing: int = 0, split: str = "prompts") -> list[dict[str, Any]]:
    """Fernwick rows as chat JSONL objects: a phrasing of the question -> the correction."""
    rows = [
        {
            "messages": [
                {"role": "user", "content": item[split][phrasing % len(item[split])]},
                {"role": "assistant", "content": item["correction"]},
            ]
        }
        for item in scenario_items()
    ]
    return rows[:n] if n is not None else rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _words() -> list[str]:
    text = " ".join(json.dumps(item) for item in scenario_items())
    text += " system user assistant You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    return sorted(set(re.findall(r"\w+|[^\w\s]", text)))


# SmolLM2-135M's shape (its config.json): a random model of it trains as fast as the real one.
SMOLLM2_135M_SHAPE: dict[str, Any] = {
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "max_position_embeddings": 8192,
}


def make_tiny_llama(directory: Path, *, seed: int = 0, shape: dict[str, Any] | None = None) -> Path:
    """Write a 2-layer, hidden-64 LlamaForCausalLM and its tokenizer to ``directory``; returns it.

    ``shape`` overrides LlamaConfig fields (for instance ``SMOLLM2_135M_SHAPE``); a ``vocab_size``
    above the tokenizer's leaves the extra embedding rows unused."""
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate([*SPECIAL, "\n", *_words()])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    # Newlines are tokens (the chat template needs them); other whitespace only separates words.
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.Split(Regex(r"[ \t]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"\w+|[^\w\s]"), behavior="isolated"),
        ]
    )
    backend.add_special_tokens(SPECIAL[:3])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="[UNK]",
    )
    tokenizer.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=vocab["<|im_start|>"],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|im_end|>"],
        tie_word_embeddings=True,
    )
    config.update(shape or {})
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory
