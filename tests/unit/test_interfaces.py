"""The LLM Protocol declares the members the code calls, and the built-in LLM provides each of them."""

from __future__ import annotations

import inspect

from omnikit.components.llms.hf_causal_lm import HFCausalLM, HFCausalLMConfig
from omnikit.interfaces import LLM


def declared(proto: type) -> tuple[list[str], list[str]]:
    """(attributes, methods and properties) a Protocol class declares, each documented."""
    methods = [n for n, v in vars(proto).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))]
    return list(proto.__annotations__), methods


def test_every_llm_member_is_documented_and_provided_by_hf_causal_lm():
    attrs, methods = declared(LLM)
    assert {"hidden_size", "tokenizer", "device", "dtype", "new_conversation", "append_audio", "step",
            "forward_train"} <= set(attrs) | set(methods)
    for name in methods:
        assert (inspect.getdoc(getattr(LLM, name)) or "").strip(), f"LLM.{name} has no docstring"
    llm = HFCausalLM(HFCausalLMConfig(model="random:llama", device="cpu", dtype="float32", prompt_embeddings=0))
    missing = [n for n in attrs + methods if not hasattr(llm, n)]
    assert not missing, f"hf_causal_lm lacks LLM members {missing}"
    for name in methods:
        if isinstance(vars(LLM)[name], property):
            continue
        want = list(inspect.signature(getattr(LLM, name)).parameters)[1:]  # without self
        have = list(inspect.signature(getattr(llm, name)).parameters)
        assert have[: len(want)] == want, f"LLM.{name}{want} vs hf_causal_lm {have}"
