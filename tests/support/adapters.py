"""LoRA adapters on the real SmolLM2-135M weights that were not trained: random, of a chosen strength.

A weak one changes a few greedy tokens; a strong one (strength about 1) turns the answers to garbage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from genesys.tools.gguf_lora import export_lora_to_gguf

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Adapter:
    peft_dir: Path
    gguf: Path


def random_adapter(cache_dir: Path, out_dir: Path, seed: int, *, strength: float = 0.12) -> Adapter:
    """A peft adapter with random A and B (B scaled by ``strength``), saved with its GGUF export as
    ``out_dir/adapter.gguf`` — the layout of a registered version's directory."""
    from peft import LoraConfig, get_peft_model

    from genesys.runtime.base_model import load_base_model

    model, _ = load_base_model(None, cache_dir)
    config = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.1, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name:
                param.copy_(torch.randn(param.shape, generator=generator) / param.shape[1] ** 0.5)
            elif "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * strength / param.shape[1] ** 0.5)
    peft_model.save_pretrained(str(out_dir))
    return Adapter(out_dir, export_lora_to_gguf(out_dir, out_dir / "adapter.gguf"))
