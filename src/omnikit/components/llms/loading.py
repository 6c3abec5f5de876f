"""Resolve the ``model`` arg of ``hf_causal_lm`` into a (model, tokenizer) pair.

Accepted forms:

* ``smollm2-135m-instruct`` (or any alias in :data:`~omnikit.components.llms.embedded.EMBEDDED`): an LLM
  shipped in a pip package, converted once to a safetensors cache;
* ``path/to/model.gguf``: any GGUF file, converted once the same way;
* a local folder or a hub id: ``AutoModelForCausalLM.from_pretrained``;
* ``random:<arch>`` (``llama``, ``qwen2``, ``gemma``, ``mistral``): a tiny randomly initialised model with an
  in-memory byte tokenizer and its family's chat template, for tests (no files, no network);
* ``config:<name>`` (``qwen2-7b``, ``smollm2-135m``) or ``config:<folder or config.json>``: the architecture
  only, built on the meta device with no weights, for paper-size dry runs (parameter counts, wiring).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from omnikit.components.llms.embedded import EMBEDDED, converted_gguf_folder, embedded_gguf_path
from omnikit.components.llms.tiny_tokenizer import byte_tokenizer

# arch -> (transformers config class name, chat family, extra config kwargs)
RANDOM_ARCHS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", "llama3", {}),
    "qwen2": ("Qwen2Config", "chatml", {}),
    "gemma": ("GemmaConfig", "gemma", {"head_dim": 16}),
    "mistral": ("MistralConfig", "mistral", {"sliding_window": None}),
}

# Architecture-only configs for meta-device dry runs (sizes from the public model cards).
PAPER_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "qwen2-7b": (
        "Qwen2Config",
        dict(
            vocab_size=152064,
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            max_position_embeddings=32768,
            rope_theta=1_000_000.0,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
        ),
    ),
    "smollm2-135m": (
        "LlamaConfig",
        dict(
            vocab_size=49152,
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            max_position_embeddings=8192,
            rope_theta=100000.0,
            rms_norm_eps=1e-5,
            tie_word_embeddings=True,
        ),
    ),
}


def _torch_dtype(dtype: str) -> torch.dtype | str:
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}
    if dtype not in table:
        raise ValueError(f"dtype must be one of {sorted(table)}, got {dtype!r}")
    return table[dtype]


def _random_model(arch: str, dtype: torch.dtype | str) -> tuple[Any, Any]:
    import transformers

    if arch not in RANDOM_ARCHS:
        raise ValueError(f"unknown random architecture {arch!r}; choose from {sorted(RANDOM_ARCHS)}")
    class_name, family, extra = RANDOM_ARCHS[arch]
    tokenizer = byte_tokenizer(family)
    config = getattr(transformers, class_name)(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(config)
    if dtype != "auto":
        model = model.to(dtype)
    return model, tokenizer


def _meta_model(name: str, dtype: torch.dtype | str) -> tuple[Any, Any]:
    import transformers

    if name in PAPER_CONFIGS:
        class_name, kwargs = PAPER_CONFIGS[name]
        config = getattr(transformers, class_name)(**kwargs)
    elif Path(name).exists():
        config = transformers.AutoConfig.from_pretrained(name)
    else:
        raise ValueError(
            f"unknown config {name!r}; use one of {sorted(PAPER_CONFIGS)} or a config folder/file"
        )
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    if dtype != "auto":
        model = model.to(dtype)
    return model, byte_tokenizer("chatml")


def load_backbone(spec: str, dtype: str = "auto") -> tuple[Any, Any, bool]:
    """``(model, tokenizer, is_meta)`` for a ``model`` arg (see the module docstring)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _torch_dtype(dtype)
    if spec.startswith("random:"):
        model, tokenizer = _random_model(
            spec.split(":", 1)[1], torch.float32 if dtype == "auto" else torch_dtype
        )
        return model, tokenizer, False
    if spec.startswith("config:"):
        model, tokenizer = _meta_model(spec.split(":", 1)[1], torch_dtype)
        return model, tokenizer, True
    if spec in EMBEDDED:
        folder: str = str(converted_gguf_folder(embedded_gguf_path(spec), alias=spec))
    elif spec.endswith(".gguf"):
        gguf = Path(spec).expanduser()
        if not gguf.is_file():
            raise FileNotFoundError(f"GGUF file not found: {gguf}")
        folder = str(converted_gguf_folder(gguf))
    else:
        folder = spec  # local folder or hub id
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype)
    return model, tokenizer, False
