"""The websocket protocol of ``omnikit serve`` (version 1): message shapes, limits, close codes, PCM conversion.

The reference is ``docs/serving.md``. In short, after the server's ``ready`` message:

* client -> server: **binary** frames of PCM16 little-endian mono audio at 16 kHz (any whole number of samples,
  at most ``max_frame_bytes``), and **text** frames holding one JSON object with a ``type``: ``start`` (open the
  conversation; required first), ``text`` (a written question: ``{"type": "text", "text": "..."}``),
  ``interrupt`` (stop the running answer) and ``end`` (finish what is queued, then close);
* server -> client: **text** frames of JSON events (``ready``, ``started``, ``state``, ``speech_start``,
  ``decision``, ``answer_start``, ``text``, ``interrupt``, ``answer_end``, ``latency``, ``error``, ``bye``) and
  **binary** frames of the answer's speech: PCM16 little-endian mono at ``ready.output.sample_rate``, always of
  the answer named by the latest ``answer_start``.

Nothing here touches the model or the network: it is the part both the server and its tests agree on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from omnikit.interfaces import SAMPLE_RATE

PROTOCOL_VERSION = 1
CLIENT_TYPES = ("start", "text", "interrupt", "end")

# Close codes (RFC 6455): the reason string says which limit or rule, in words.
CLOSE_NORMAL = 1000
"""``end`` was processed, or the server shut down."""
CLOSE_GOING_AWAY = 1001
"""Idle timeout, or the server is stopping."""
CLOSE_POLICY = 1008
"""Bad or missing token, a foreign origin, too many malformed messages, or a client that does not keep up."""
CLOSE_INTERNAL = 1011
"""The model failed on this session's input; other sessions continue."""
CLOSE_TRY_LATER = 1013
"""The server already holds ``--max-sessions`` sessions."""


@dataclass(frozen=True)
class Limits:
    """Per-connection limits; the defaults suit a browser microphone and a CPU server."""

    max_frame_bytes: int = 64_000
    """Largest binary audio frame (2 s of PCM16 at 16 kHz); larger ones are refused with an error event."""
    max_message_bytes: int = 16_384
    """Largest JSON control message."""
    max_text_chars: int = 2_000
    """Longest written question."""
    max_queued_input_s: float = 4.0
    """Audio waiting for the scheduler; beyond it the server stops reading this client's socket (slows it)."""
    max_queued_output_s: float = 8.0
    """Answer audio made but not yet written to the socket; beyond it this session's answer pauses."""
    stall_timeout_s: float = 20.0
    """A client whose input stays over its limit, or whose socket accepts nothing, this long is dropped."""
    max_errors: int = 50
    """Malformed messages tolerated per connection (each gets an error event); then the connection is closed."""


class ProtocolError(ValueError):
    """A malformed client message: answered with an ``error`` event, the connection survives."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def error_event(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}


def parse_control(text: str, limits: Limits) -> dict[str, Any]:
    """Validate one JSON control message; raises :class:`ProtocolError` with a code and a readable message."""
    if len(text.encode("utf-8", "surrogatepass")) > limits.max_message_bytes:
        raise ProtocolError("message_too_large", f"control messages are at most {limits.max_message_bytes} bytes")
    try:
        msg = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError("bad_json", "a text frame must hold one JSON object") from None
    if not isinstance(msg, dict):
        raise ProtocolError("bad_json", "a text frame must hold one JSON object, not a JSON "
                            + type(msg).__name__)
    kind = msg.get("type")
    if kind not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"unknown message type {str(kind)[:40]!r}; "
                            f"expected one of: {', '.join(CLIENT_TYPES)}")
    if kind == "text":
        question = msg.get("text")
        if not isinstance(question, str) or not question.strip():
            raise ProtocolError("bad_text", "a text message needs a non-empty string field 'text'")
        if len(question) > limits.max_text_chars:
            raise ProtocolError("text_too_long", f"a written question is at most {limits.max_text_chars} characters")
    return msg


def pcm16_to_float(data: bytes, limits: Limits) -> Tensor:
    """A binary frame (PCM16 LE mono 16 kHz) as float PCM in [-1, 1]; raises :class:`ProtocolError`."""
    if not data:
        raise ProtocolError("bad_audio", "empty audio frame")
    if len(data) > limits.max_frame_bytes:
        raise ProtocolError("frame_too_large", f"audio frames are at most {limits.max_frame_bytes} bytes "
                            f"({limits.max_frame_bytes // 2 / SAMPLE_RATE:.2f} s); send smaller pieces")
    if len(data) % 2:
        raise ProtocolError("bad_audio", "an audio frame must hold whole 16-bit samples (an even number of bytes)")
    pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    return torch.from_numpy(pcm)


def float_to_pcm16(pcm: Tensor) -> bytes:
    """Float PCM (any shape) as PCM16 little-endian bytes; NaN becomes silence, peaks are clipped."""
    x = torch.nan_to_num(pcm.detach().float().reshape(-1).cpu(), nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1, 1)
    return (x * 32767.0).round().to(torch.int16).numpy().astype("<i2").tobytes()


def ready_message(session_id: int, output_rate: int, limits: Limits, idle_timeout_s: float | None,
                  chunk_ms: float) -> dict[str, Any]:
    """The first message of every accepted connection."""
    return {
        "type": "ready", "protocol": PROTOCOL_VERSION, "session": session_id,
        "input": {"format": "pcm_s16le", "channels": 1, "sample_rate": SAMPLE_RATE,
                  "max_frame_bytes": limits.max_frame_bytes},
        "output": {"format": "pcm_s16le", "channels": 1, "sample_rate": int(output_rate)},
        "chunk_ms": chunk_ms, "idle_timeout_s": idle_timeout_s, "max_text_chars": limits.max_text_chars,
    }


def session_event_message(kind: str, t: float, data: dict[str, Any]) -> dict[str, Any]:
    """A :class:`~omnikit.inference.session.Event` (not audio) as a JSON event: its data plus ``type`` and ``t``."""
    return {"type": kind, "t": round(float(t), 3), **{k: v for k, v in data.items() if k != "pcm"}}


def dumps(msg: dict[str, Any]) -> str:
    """Compact JSON; NaN and infinities (a broken model's probabilities) become null, tensors become lists."""
    return json.dumps(_clean(msg), separators=(",", ":"), allow_nan=False)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, Tensor | np.ndarray | np.generic):
        return _clean(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
