"""A byte-level tokenizer built offline in memory, for tiny random test models and meta-device dry runs.

Every byte is one token (no merges), plus the special tokens of one chat family, and the family's chat
template from :data:`omnikit.components.llms.chat_template.TEMPLATES`. Any text round-trips exactly.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from omnikit.components.llms.chat_template import TEMPLATES

# family -> (special tokens, bos, eos, pad)
FAMILIES: dict[str, tuple[list[str], str | None, str, str]] = {
    "chatml": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>", "<|endoftext|>"),
    "llama3": (
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|end_of_text|>",
    ),
    "gemma": (["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>", "<pad>"),
    "mistral": (["<unk>", "<s>", "</s>", "[INST]", "[/INST]"], "<s>", "</s>", "<unk>"),
}


def byte_tokenizer(family: str = "chatml") -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with ``family``'s special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    if family not in FAMILIES:
        raise ValueError(f"unknown chat family {family!r}; choose from {sorted(FAMILIES)}")
    specials, bos, eos, pad = FAMILIES[family]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=eos, pad_token=pad, bos_token=bos)
    tok.chat_template = TEMPLATES[family]
    return tok
