"""Chat-template splitting: the segments rebuild the tokenizer's own rendering of a conversation."""

from __future__ import annotations

import pytest

from omnikit.components.llms.chat_template import ChatTemplateError, split_chat_template
from omnikit.components.llms.tiny_tokenizer import FAMILIES, byte_tokenizer


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_segments_rebuild_the_rendered_conversation(family: str) -> None:
    tok = byte_tokenizer(family)
    seg = split_chat_template(tok)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there?"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Name a colour."},
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    rebuilt = (
        seg.system_ids(tok, "Be brief.")
        + seg.user_prefix_first
        + _ids(tok, "Hi there?")
        + seg.assistant_prefix
        + _ids(tok, "Hello.")
        + seg.user_prefix
        + _ids(tok, "Name a colour.")
        + seg.assistant_prefix
    )
    assert rebuilt == _ids(tok, rendered)
    # the answer's end-of-turn token is the stop criterion, and it is what user_prefix starts with
    # whenever the template closes assistant turns with it
    assert seg.end_of_turn[0] in seg.stop_ids
    assert tok.decode(seg.end_of_turn) in tok.decode(_ids(tok, rendered))


def test_split_finds_family_specific_pieces_without_hardcoded_ids() -> None:
    chatml = split_chat_template(byte_tokenizer("chatml")).texts
    assert chatml["user_prefix_first"] == "<|im_end|>\n<|im_start|>user\n"
    assert chatml["assistant_prefix"] == "<|im_end|>\n<|im_start|>assistant\n"
    gemma = split_chat_template(byte_tokenizer("gemma")).texts
    assert gemma["system_prefix"].endswith("<start_of_turn>user\n")  # system folded into the first user turn
    assert gemma["user_prefix"] == "<end_of_turn>\n<start_of_turn>user\n"
    assert gemma["end_of_turn"] == "<end_of_turn>"


def test_template_override_and_missing_template_error() -> None:
    tok = byte_tokenizer("chatml")
    tok.chat_template = None
    with pytest.raises(ChatTemplateError, match="chat_template"):
        split_chat_template(tok)
    seg = split_chat_template(tok, "chatml")
    assert seg.texts["end_of_turn"] == "<|im_end|>"


def test_template_without_system_role_falls_back_to_user_turn() -> None:
    tok = byte_tokenizer("gemma")
    strict = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "{{ '<start_of_turn>' + m['role'] + '\n' + m['content'] + '<end_of_turn>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
    )
    seg = split_chat_template(tok, strict)
    assert seg.texts["system_prefix"] == "<bos><start_of_turn>user\n"
    assert seg.texts["assistant_prefix"] == "<end_of_turn>\n<start_of_turn>model\n"
