"""Conformance kit: behaviour checks a component of each kind must pass, for built-ins and plugins alike.

Each ``check_<kind>(component, ...)`` takes a tiny instance, runs it on generated inputs and raises
``AssertionError`` with a message naming the component, the check and the difference found. They are plain
functions (no pytest needed), so a plugin's own tests call them directly::

    from omnikit.testing import check_codec

    def test_my_codec_conforms():
        check_codec(MyCodec(MyCodecConfig(codebook_size=16)))

What every check covers, beyond the registry's member check (``check_contract``):

- output shapes and dtypes of the kind's methods;
- streaming equals offline: the chunk-by-chunk path fed in pieces with an explicit state reproduces the
  full-sequence path (a VAD, which has no full-sequence twin, and a duplex policy are checked for determinism);
- state is explicit: two streams interleaved through one instance give what each gives alone, and a step
  leaves the state it was given usable;
- the state dict round-trips (through safetensors) into a fresh instance with identical outputs. The fresh
  instance is ``type(component)(component.config, **context)`` unless ``fresh=<factory>`` is given.

Each check returns a small dict of what it measured (e.g. ``stream_max_abs``).
"""

from omnikit.testing.conformance import (
    check_adapter,
    check_codec,
    check_contract,
    check_duplex_policy,
    check_encoder,
    check_speech_decoder,
    check_vad,
    round_trip,
    speech_like,
)

__all__ = [
    "check_adapter",
    "check_codec",
    "check_contract",
    "check_duplex_policy",
    "check_encoder",
    "check_speech_decoder",
    "check_vad",
    "round_trip",
    "speech_like",
]
