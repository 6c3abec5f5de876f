"""Split a tokenizer's own chat template into the token segments the speech path needs.

The template is rendered with unique marker strings in place of the system, user and assistant texts, and
cut at the markers. No model-specific token ids or strings live in code, so any chat model works:

* ``system_prefix`` + system text: the system prefill (without the closing of the system turn);
* ``user_prefix_first``: closes the system turn and opens the first user turn;
* ``user_prefix``: closes an assistant turn and opens a later user turn (the end-of-turn token that the
  generator sampled but did not feed is supplied here);
* ``assistant_prefix``: closes the user turn and opens the assistant turn (the generation prompt);
* ``end_of_turn``: the tokens that close an assistant turn; their first token is the stop criterion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SYSTEM_MARK = "\u27e6omnikit-system-7f3a\u27e7"
USER_MARK = "\u27e6omnikit-user-7f3a\u27e7"
USER2_MARK = "\u27e6omnikit-user2-7f3a\u27e7"
ASSISTANT_MARK = "\u27e6omnikit-assistant-7f3a\u27e7"

# Built-in template strings for tokenizers that ship none (select with ``chat_template: chatml`` etc.).
TEMPLATES: dict[str, str] = {
    "chatml": (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n'"
        " + m['content'] + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    "gemma": (
        "{{ bos_token }}{% set ns = namespace(sys='') %}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.sys = m['content'] + '\n\n' %}"
        "{% else %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
        "{{ '<start_of_turn>' + role + '\n' + ns.sys + m['content'] + '<end_of_turn>\n' }}"
        "{% set ns.sys = '' %}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
    ),
    "mistral": (
        "{{ bos_token }}{% set ns = namespace(sys='') %}{% for m in messages %}"
        "{% if m['role'] == 'system' %}{% set ns.sys = m['content'] + '\n\n' %}"
        "{% elif m['role'] == 'user' %}{{ '[INST] ' + ns.sys + m['content'] + ' [/INST]' }}{% set ns.sys = '' %}"
        "{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}"
    ),
}


class ChatTemplateError(ValueError):
    """The tokenizer has no usable chat template."""


@dataclass
class ChatSegments:
    """Token-id pieces of one chat format (see the module docstring)."""

    system_prefix: list[int]
    user_prefix_first: list[int]
    user_prefix: list[int]
    assistant_prefix: list[int]
    end_of_turn: list[int]
    stop_ids: set[int] = field(default_factory=set)
    texts: dict[str, str] = field(default_factory=dict)  # the same pieces as strings, for docs and tests

    def system_ids(self, tokenizer: Any, system_prompt: str) -> list[int]:
        """``system_prefix`` + the system text: the whole system prefill."""
        return self.system_prefix + encode(tokenizer, system_prompt)


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added (templates carry their own BOS)."""
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def resolve_template(tokenizer: Any, chat_template: str | None) -> str:
    """The template string to use: the override (a built-in name or a Jinja string), else the tokenizer's."""
    if chat_template:
        return TEMPLATES.get(chat_template, chat_template)
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # several named templates: take the default one
        own = own.get("default") or next(iter(own.values()), None)
    if not own:
        raise ChatTemplateError(
            f"tokenizer {type(tokenizer).__name__} has no chat template; set the llm arg `chat_template` to "
            f"one of {sorted(TEMPLATES)} or to a Jinja template string"
        )
    return str(own)


def _render(tokenizer: Any, template: str, messages: list[dict[str, str]], generation: bool) -> str:
    return str(
        tokenizer.apply_chat_template(
            messages, chat_template=template, tokenize=False, add_generation_prompt=generation
        )
    )


def _cut(text: str, start_mark: str | None, end_mark: str | None) -> str:
    """The text between two markers (or the start / the end of ``text``)."""
    start = 0
    if start_mark is not None:
        pos = text.index(start_mark)
        start = pos + len(start_mark)
    end = len(text) if end_mark is None else text.index(end_mark, start)
    return text[start:end]


def split_chat_template(tokenizer: Any, chat_template: str | None = None) -> ChatSegments:
    """Render the template with marker texts and cut it into :class:`ChatSegments`."""
    template = resolve_template(tokenizer, chat_template)
    sys_msg = {"role": "system", "content": SYSTEM_MARK}
    user_msg = {"role": "user", "content": USER_MARK}
    asst_msg = {"role": "assistant", "content": ASSISTANT_MARK}
    user2_msg = {"role": "user", "content": USER2_MARK}
    try:
        with_system = True
        gen = _render(tokenizer, template, [sys_msg, user_msg], generation=True)
        turn = _render(tokenizer, template, [sys_msg, user_msg, asst_msg], generation=False)
        two = _render(tokenizer, template, [sys_msg, user_msg, asst_msg, user2_msg], generation=True)
    except Exception:  # templates that reject a system role: put the system text at the head of the user turn
        with_system = False
        gen = _render(tokenizer, template, [user_msg], generation=True)
        turn = _render(tokenizer, template, [user_msg, asst_msg], generation=False)
        two = _render(tokenizer, template, [user_msg, asst_msg, user2_msg], generation=True)
    for mark, text in ((USER_MARK, gen), (ASSISTANT_MARK, turn), (USER2_MARK, two)):
        if mark not in text:
            raise ChatTemplateError(f"chat template dropped the message text (marker {mark!r} not rendered)")
    if with_system and SYSTEM_MARK not in gen:
        raise ChatTemplateError("chat template dropped the system message")
    if with_system:
        texts = {
            "system_prefix": _cut(gen, None, SYSTEM_MARK),
            "user_prefix_first": _cut(gen, SYSTEM_MARK, USER_MARK),
        }
    else:
        texts = {"system_prefix": _cut(gen, None, USER_MARK), "user_prefix_first": "\n\n"}
    texts["assistant_prefix"] = _cut(gen, USER_MARK, None)
    texts["user_prefix"] = _cut(two, ASSISTANT_MARK, USER2_MARK)
    after_answer = _cut(turn, ASSISTANT_MARK, None)
    texts["end_of_turn"] = after_answer.rstrip() or after_answer
    if not texts["assistant_prefix"]:
        raise ChatTemplateError("chat template renders no generation prompt after the user turn")
    eot = encode(tokenizer, texts["end_of_turn"])
    if not eot:
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            raise ChatTemplateError("chat template has no end-of-turn text and the tokenizer no EOS token")
        eot = [int(eos)]
    stop_ids = {eot[0]}
    if getattr(tokenizer, "eos_token_id", None) is not None:
        stop_ids.add(int(tokenizer.eos_token_id))
    return ChatSegments(
        system_prefix=encode(tokenizer, texts["system_prefix"]),
        user_prefix_first=encode(tokenizer, texts["user_prefix_first"]),
        user_prefix=encode(tokenizer, texts["user_prefix"]),
        assistant_prefix=encode(tokenizer, texts["assistant_prefix"]),
        end_of_turn=eot,
        stop_ids=stop_ids,
        texts=texts,
    )
