"""The Protocols declare the members the code calls (documented), the built-in LLM provides each of them with
matching signatures, and every built-in component passes the registry's contract check."""

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


# ---------------------------------------------------------------- every built-in meets its kind's contract
from importlib import metadata  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from omnikit.data.char_vocab import CharVocab  # noqa: E402
from omnikit.interfaces import KIND_PROTOCOLS, OPTIONAL_MEMBERS, contract_gaps, protocol_members  # noqa: E402
from omnikit.registry import KINDS, get_registry, reset_registries  # noqa: E402

TINY_ENCODER = {"layers": 1, "dim": 16, "heads": 2, "ffn_dim": 16, "ctc_vocab": CharVocab().size}  # ctc_connector reads it
TINY_ARGS: dict[tuple[str, str], dict] = {
    ("encoder", "chunk_transformer"): TINY_ENCODER,
    ("encoder", "sb_conformer"): {**TINY_ENCODER, "kernel_size": 3},
    ("encoder", "whisper_encoder"): {**TINY_ENCODER, "weights": "", "max_positions": 64},
    ("adapter", "cnn_subsampling"): {},
    ("adapter", "linear"): {"stack": 2},
    ("adapter", "ctc_connector"): {},
    ("llm", "hf_causal_lm"): {"model": "random:llama", "device": "cpu", "dtype": "float32", "prompt_embeddings": 0},
    ("speech_decoder", "nar_ar"): {"dim": 16, "heads": 2, "ffn_dim": 16, "layers": 1, "prefix_layers": 1,
                                   "prenet_layers": 1},
    ("speech_decoder", "cascade_tts"): {},
    ("speech_decoder", "nar_duration"): {"dim": 16, "heads": 2, "ffn_dim": 16, "encoder_layers": 1,
                                         "decoder_layers": 1, "duration_dim": 8, "align_dim": 8},
    ("codec", "mel_vq"): {"codebook_size": 8, "decoder_dim": 8},
    ("codec", "waveform_vq"): {"sample_rate": 8000, "strides": [4, 2], "channels": 4, "code_dim": 8,
                               "codebook_size": 8, "resblock_kernels": [3], "resblock_dilations": [1], "kernels": []},
    ("codec", "encodec"): {"n_filters": 4, "dimension": 16, "lstm": 0},
    ("duplex_policy", "state_head"): {},
    ("duplex_policy", "vad_endpoint"): {},
    ("vad", "silero"): {},
    ("vad", "energy"): {},
    ("objective", "ctc"): {},
    ("objective", "llm_next_token"): {},
    ("objective", "state_ce"): {},
    ("objective", "cached_state_ce"): {},
    ("objective", "codec_token_ce"): {},
    ("objective", "cached_codec_token_ce"): {},
    ("objective", "codec_reconstruction"): {},
    ("dataset", "lhotse_manifest"): {"parts": {"train": ["train.jsonl.gz"]}},
    ("dataset", "synthetic_tones"): {},
    ("dataset", "speech_world"): {},
    ("dataset", "audio_folder"): {"path": "recordings"},
    ("dataset", "librispeech"): {"corpus_dir": "LibriSpeech"},
}
"""Tiny recipe args of every built-in (a new built-in without an entry here fails the test below)."""
NEEDS = {"silero": "silero_vad"}


def builtin_components() -> list[tuple[str, str]]:
    return sorted((kind, ep.name) for kind, group in KINDS.items() for ep in metadata.entry_points(group=group)
                  if ep.dist is not None and ep.dist.metadata["Name"] == "omnikit")


def test_every_protocol_member_is_documented_and_optional_members_are_not_declared():
    for kind, proto in KIND_PROTOCOLS.items():
        attrs, methods = protocol_members(proto)
        assert attrs or methods, kind
        for name in methods:
            assert (inspect.getdoc(getattr(proto, name)) or "").strip(), f"{proto.__name__}.{name} has no docstring"
        for name in OPTIONAL_MEMBERS[kind]:
            assert name not in attrs + methods, f"{kind}: optional {name} is declared as required"
            assert name in (proto.__doc__ or ""), f"{proto.__name__}'s docstring does not describe optional {name}"


def test_tiny_args_cover_every_builtin():
    assert set(builtin_components()) == set(TINY_ARGS)


@pytest.fixture(scope="module")
def neighbours():
    """Built once: the LLM and an encoder with a CTC head, for the build context of adapters and decoders."""
    reset_registries()
    llm = get_registry("llm").build("hf_causal_lm", TINY_ARGS["llm", "hf_causal_lm"])
    encoder = get_registry("encoder").build("chunk_transformer", TINY_ARGS["encoder", "chunk_transformer"])
    return {"llm": llm, "encoder": encoder}


@pytest.mark.parametrize(("kind", "name"), builtin_components(), ids=lambda v: v)
def test_builtin_component_meets_its_contract(kind, name, neighbours, tmp_path, monkeypatch):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    monkeypatch.chdir(tmp_path)  # anything a constructor writes stays in the test's folder
    context = {
        "encoder": {"input_dim": 80},
        "adapter": {"in_dim": 16, "out_dim": neighbours["llm"].hidden_size, **neighbours},
        "speech_decoder": {"cond_dim": neighbours["llm"].hidden_size, "codebook_size": 8},
    }.get(kind, {})
    torch.manual_seed(0)
    component = get_registry(kind).build(name, TINY_ARGS[kind, name], **context)  # raises on a contract gap
    assert contract_gaps(component, kind) == []
    if kind in ("encoder", "adapter", "speech_decoder", "codec", "vad", "duplex_policy"):
        assert isinstance(component, KIND_PROTOCOLS[kind])  # runtime Protocol check agrees
