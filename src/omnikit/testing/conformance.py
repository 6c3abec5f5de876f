"""Behaviour checks for components, one per kind (see the package docstring)."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from omnikit.interfaces import CHUNK_FRAMES, FEATURE_DIM, contract_gaps

Factory = Callable[[], Any]


# ------------------------------------------------------------------ helpers
def _label(component: Any, kind: str) -> str:
    return f"{kind} {type(component).__name__}"


def check_contract(component: Any, kind: str) -> None:
    """Every member of ``kind``'s Protocol is present, methods callable (the registry's own check)."""
    gaps = contract_gaps(component, kind)
    if gaps:
        raise AssertionError(f"{_label(component, kind)} does not meet the {kind} contract "
                             f"(omnikit.interfaces): missing {', '.join(gaps)}")


def _eval(component: Any) -> None:
    if isinstance(component, torch.nn.Module):
        component.eval()


def _call(component: Any, *args: Any) -> Any:
    """``component(*args)`` for a module (hooks run), else ``component.forward(*args)``."""
    return component(*args) if isinstance(component, torch.nn.Module) else component.forward(*args)


def _max_diff(a: Tensor, b: Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).abs().max()) if a.numel() else 0.0


def _expect_close(label: str, what: str, got: Tensor, want: Tensor, atol: float, hint: str = "") -> float:
    if tuple(got.shape) != tuple(want.shape):
        raise AssertionError(f"{label}: {what}: shape {tuple(got.shape)}, expected {tuple(want.shape)}{hint}")
    diff = _max_diff(got, want)
    if not diff <= atol:  # also catches NaN
        raise AssertionError(f"{label}: {what}: max abs difference {diff:.3g} > atol {atol:g}{hint}")
    return diff


def _expect(cond: bool, label: str, message: str) -> None:
    if not cond:
        raise AssertionError(f"{label}: {message}")


def _rebuild(component: Any, fresh: Factory | None, seed: int, **context: Any) -> Any:
    """A second instance with other random weights: ``fresh()``, else ``type(component)(config, **context)``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 7919)
        if fresh is not None:
            return fresh()
        config = getattr(component, "config", None)
        if config is None:
            raise AssertionError(f"{type(component).__name__} has no `config`: pass fresh=<factory> to rebuild it")
        return type(component)(copy.deepcopy(config), **context)


def round_trip(component: Any, fresh: Any) -> Any:
    """Load ``component``'s state dict into ``fresh`` through safetensors bytes (strict: same keys); ``fresh``.

    Both must be ``torch.nn.Module``s. Buffers (CMVN statistics, a fitted codebook) travel with the weights."""
    from safetensors.torch import load, save

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in component.state_dict().items()}
    try:
        fresh.load_state_dict(load(save(state)))
    except RuntimeError as exc:
        raise AssertionError(f"{type(component).__name__}: its state dict does not load into a fresh instance: "
                             f"{exc}") from exc
    _eval(fresh)
    return fresh


def speech_like(seconds: float, sample_rate: int, seed: int = 0) -> Tensor:
    """A test signal (1-D, float in [-1, 1]): harmonics with a gliding pitch, a syllable-rate envelope, a little
    noise. Deterministic for a seed; no audio files needed."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 110 + 60 * torch.rand(1, generator=g) + 30 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(f0 / sample_rate, 0)
    top = max(1, min(12, int(sample_rate / 2 / 200)))
    wav = sum(torch.sin(k * phase) / k for k in range(1, top + 1))
    env = (torch.sin(2 * math.pi * (3 + torch.rand(1, generator=g)) * t) > -0.3).float()
    return (0.1 * wav * env + 0.003 * torch.randn(t.shape, generator=g)).clamp(-1, 1)


def _interleave(streams: Sequence[Iterator[Any]]) -> list[list[Any]]:
    """Advance several iterators in turn until all are done; each one's items."""
    out: list[list[Any]] = [[] for _ in streams]
    live = list(range(len(streams)))
    while live:
        for i in list(live):
            try:
                out[i].append(next(streams[i]))
            except StopIteration:
                live.remove(i)
    return out


# ------------------------------------------------------------------ encoder
def _encoder_stream(encoder: Any, feats: Tensor, chunk_frames: int) -> Iterator[Tensor]:
    state = encoder.init_state()
    for start in range(0, feats.shape[1], chunk_frames):
        h, state = encoder.forward_chunk(feats[:, start : start + chunk_frames], state)
        yield h


@torch.no_grad()
def check_encoder(
    encoder: Any,
    *,
    feature_dim: int = FEATURE_DIM,
    chunks: int = 4,
    chunk_frames: int = CHUNK_FRAMES,
    atol: float = 1e-4,
    seed: int = 0,
    fresh: Factory | None = None,
    check_batch: bool = True,
) -> dict[str, float]:
    """Check an encoder on random features of ``chunks`` streaming chunks (puts it in eval mode).

    - contract; ``forward`` gives ``hidden (1, T', output_dim)``, ``lens``, and CTC logits exactly when
      ``ctc_vocab_size > 0``;
    - streaming equals offline: ``forward_chunk`` over ``chunk_frames``-frame chunks from ``init_state()``
      reproduces ``forward``'s valid frames;
    - a padded batch gives each item's own result (``check_batch``);
    - state is explicit: two interleaved streams equal two separate ones, and ``forward_chunk`` leaves the state
      it was given usable (calling it twice from one state gives the same frames);
    - the state dict round-trips into a fresh instance (``fresh()``, else ``type(encoder)(config,
      input_dim=feature_dim)``) with identical outputs.
    """
    label = _label(encoder, "encoder")
    check_contract(encoder, "encoder")
    _eval(encoder)
    g = torch.Generator().manual_seed(seed)
    n_frames = chunks * chunk_frames
    a, b = (torch.randn(1, n_frames, feature_dim, generator=g) for _ in range(2))
    lens = torch.tensor([n_frames])

    out = _call(encoder, a, lens)
    hidden = out.hidden
    _expect(hidden.dim() == 3 and hidden.shape[0] == 1 and hidden.shape[2] == encoder.output_dim, label,
            f"forward's hidden has shape {tuple(hidden.shape)}, expected (1, T', output_dim={encoder.output_dim})")
    n = int(out.lens[0])
    _expect(0 < n <= hidden.shape[1], label, f"forward's lens {n} outside 1..{hidden.shape[1]}")
    vocab = int(encoder.ctc_vocab_size)
    if vocab > 0:
        _expect(out.ctc_logits is not None and tuple(out.ctc_logits.shape) == (1, hidden.shape[1], vocab), label,
                f"ctc_logits should be (1, {hidden.shape[1]}, ctc_vocab_size={vocab}), got "
                f"{None if out.ctc_logits is None else tuple(out.ctc_logits.shape)}")
    else:
        _expect(out.ctc_logits is None, label, "ctc_logits given while ctc_vocab_size is 0")

    streamed = torch.cat(list(_encoder_stream(encoder, a, chunk_frames)), 1)
    report = {"stream_max_abs": _expect_close(
        label, "streaming (forward_chunk) vs offline (forward)", streamed, hidden[:, :n], atol,
        " (the full-sequence forward must apply the same chunk mask as streaming)")}

    if check_batch:
        short = n_frames - chunk_frames
        batch = torch.zeros(2, n_frames, feature_dim)
        batch[0], batch[1, :short] = a[0], b[0, :short]
        both = _call(encoder, batch, torch.tensor([n_frames, short]))
        alone = _call(encoder, b[:, :short], torch.tensor([short]))
        m = int(alone.lens[0])
        _expect([int(x) for x in both.lens] == [n, m], label,
                f"padded batch lens {both.lens.tolist()}, expected {[n, m]}")
        _expect_close(label, "padded batch item 0 vs alone", both.hidden[0, :n], hidden[0, :n], atol)
        _expect_close(label, "padded batch item 1 vs alone", both.hidden[1, :m], alone.hidden[0, :m], atol,
                      " (padding frames must not change valid frames)")

    separate = [list(_encoder_stream(encoder, x, chunk_frames)) for x in (a, b)]
    mixed = _interleave([_encoder_stream(encoder, x, chunk_frames) for x in (a, b)])
    for i in range(2):
        _expect_close(label, f"interleaved stream {i} vs alone", torch.cat(mixed[i], 1), torch.cat(separate[i], 1),
                      atol, " (streaming state must live in the state object, not in the module)")
    s0 = encoder.init_state()
    _, s1 = encoder.forward_chunk(a[:, :chunk_frames], s0)
    first, _ = encoder.forward_chunk(a[:, chunk_frames : 2 * chunk_frames], s1)
    again, _ = encoder.forward_chunk(a[:, chunk_frames : 2 * chunk_frames], s1)
    _expect_close(label, "forward_chunk twice from one state", again, first, atol,
                  " (forward_chunk must not modify the state it is given: return a new one)")

    if isinstance(encoder, torch.nn.Module):
        other = round_trip(encoder, _rebuild(encoder, fresh, seed, input_dim=feature_dim))
        _expect_close(label, "forward after a state-dict round trip", _call(other, a, lens).hidden, hidden, 0.0)
        _expect_close(label, "forward_chunk after a state-dict round trip",
                      torch.cat(list(_encoder_stream(other, a, chunk_frames)), 1), streamed, 0.0)
    return report


# ------------------------------------------------------------------ adapter
def _adapter_stream(adapter: Any, x: Tensor, frames: int) -> Iterator[Tensor]:
    state = adapter.init_state()
    for start in range(0, x.shape[1], frames):
        y, state = adapter.forward_chunk(x[:, start : start + frames], state)
        yield y


@torch.no_grad()
def check_adapter(
    adapter: Any,
    *,
    in_dim: int,
    out_dim: int,
    frames_per_chunk: int = CHUNK_FRAMES // 4,
    chunks: int = 6,
    atol: float = 1e-4,
    seed: int = 0,
    fresh: Factory | None = None,
) -> dict[str, float]:
    """Check an adapter on random encoder frames ``(1, chunks * frames_per_chunk, in_dim)`` (eval mode).

    - contract; ``forward`` gives ``(1, T'', out_dim)`` and valid lengths;
    - streaming equals offline: ``forward_chunk`` over ``frames_per_chunk``-frame chunks (one encoder chunk)
      reproduces ``forward``'s valid embeddings;
    - explicit state: two interleaved streams equal two separate ones; ``forward_chunk`` twice from one state
      gives the same embeddings;
    - the state dict round-trips into a fresh instance (``fresh()``, else ``type(adapter)(config,
      in_dim=in_dim, out_dim=out_dim)``) with identical outputs.
    """
    label = _label(adapter, "adapter")
    check_contract(adapter, "adapter")
    _eval(adapter)
    g = torch.Generator().manual_seed(seed)
    n = chunks * frames_per_chunk
    a, b = (torch.randn(1, n, in_dim, generator=g) for _ in range(2))
    lens = torch.tensor([n])
    y, ylens = _call(adapter, a, lens)
    _expect(y.dim() == 3 and y.shape[0] == 1 and y.shape[2] == out_dim, label,
            f"forward gives shape {tuple(y.shape)}, expected (1, T'', out_dim={out_dim})")
    m = int(ylens[0])
    _expect(0 <= m <= y.shape[1], label, f"forward's lens {m} outside 0..{y.shape[1]}")
    streamed = torch.cat(list(_adapter_stream(adapter, a, frames_per_chunk)), 1)
    report = {"stream_max_abs": _expect_close(label, "streaming (forward_chunk) vs offline (forward)", streamed,
                                              y[:, :m], atol)}
    separate = [torch.cat(list(_adapter_stream(adapter, x, frames_per_chunk)), 1) for x in (a, b)]
    mixed = _interleave([_adapter_stream(adapter, x, frames_per_chunk) for x in (a, b)])
    for i in range(2):
        _expect_close(label, f"interleaved stream {i} vs alone", torch.cat(mixed[i], 1), separate[i], atol,
                      " (streaming state must live in the state object, not in the module)")
    _, s1 = adapter.forward_chunk(a[:, :frames_per_chunk], adapter.init_state())
    nxt = a[:, frames_per_chunk : 3 * frames_per_chunk]
    first, _ = adapter.forward_chunk(nxt, s1)
    again, _ = adapter.forward_chunk(nxt, s1)
    _expect_close(label, "forward_chunk twice from one state", again, first, atol,
                  " (forward_chunk must not modify the state it is given: return a new one)")
    if isinstance(adapter, torch.nn.Module):
        other = round_trip(adapter, _rebuild(adapter, fresh, seed, in_dim=in_dim, out_dim=out_dim))
        _expect_close(label, "forward after a state-dict round trip", _call(other, a, lens)[0], y, 0.0)
    return report


# ------------------------------------------------------------------ codec
def _codec_stream(decoder: Any, tokens: Tensor, step: int) -> Iterator[Tensor]:
    for i in range(0, tokens.numel(), step):
        yield decoder.push(tokens[i : i + step]).reshape(-1)
    yield decoder.flush().reshape(-1)


@torch.no_grad()
def check_codec(
    codec: Any,
    *,
    wav: Tensor | None = None,
    seconds: float = 0.5,
    first_chunk: int = 20,
    chunk: int = 40,
    context: int = 10,
    step: int = 3,
    compare: str = "samples",
    atol: float = 1e-4,
    log_mel_tol: float = 0.1,
    seed: int = 0,
    fresh: Factory | None = None,
) -> dict[str, float]:
    """Check a codec on two test signals (``wav`` (2, samples), else :func:`speech_like`; eval mode).

    - contract; ``sample_rate``, ``frame_rate`` and ``codebook_size`` are positive and ``sample_rate /
      frame_rate`` is a whole number of samples per token;
    - ``encode`` gives ``(2, N)`` long tokens in ``[0, codebook_size)``, ``N`` = samples / samples-per-token
      for whole-token audio and at least enough tokens to cover a ragged length; ``decode`` gives
      ``(2, N * samples_per_token)`` finite floats;
    - streaming equals offline: a ``streaming_decoder(first_chunk, chunk, context)`` fed ``step`` tokens at a time,
      then flushed, reproduces ``decode``: sample by sample (``compare="samples"``: max abs difference at most
      ``atol`` times the peak) or, for a decoder that re-estimates phase per window (Griffin-Lim), in the
      log-mel domain (``compare="log_mel"``: mean log-mel distance at most ``log_mel_tol``);
    - explicit state: two streaming decoders interleaved equal two separate ones, and a flushed decoder starts
      afresh;
    - the optional ``reconstruction_loss`` (run on a copy) gives a finite scalar ``"loss"``;
    - the state dict round-trips into a fresh instance (``fresh()``, else ``type(codec)(config)``): identical
      tokens and audio.
    """
    label = _label(codec, "codec")
    check_contract(codec, "codec")
    _eval(codec)
    if compare not in ("samples", "log_mel"):
        raise ValueError(f"compare must be 'samples' or 'log_mel', not {compare!r}")
    sr, rate, size = int(codec.sample_rate), float(codec.frame_rate), int(codec.codebook_size)
    _expect(sr > 0 and rate > 0 and size > 0, label, f"sample_rate {sr}, frame_rate {rate}, codebook_size {size}")
    spt = round(sr / rate)
    _expect(abs(sr / rate - spt) < 1e-6, label, f"sample_rate / frame_rate = {sr / rate} is not a whole number")
    if wav is None:
        n = max(2, round(seconds * rate / 2) * 2) * spt  # an even number of tokens' worth of samples
        wav = torch.stack([speech_like(n / sr, sr, seed)[:n], speech_like(n / sr, sr, seed + 1)[:n]])
    _expect(wav.dim() == 2 and wav.shape[0] == 2, label, f"wav must be (2, samples), got {tuple(wav.shape)}")
    n = wav.shape[1]

    tokens = codec.encode(wav)
    want_n = -(-n // spt)
    _expect(tokens.dim() == 2 and tokens.shape[0] == 2, label, f"encode gives {tuple(tokens.shape)}, expected (2, N)")
    _expect(tokens.dtype == torch.long, label, f"encode gives {tokens.dtype}, expected torch.long")
    if n % spt == 0:
        _expect(tokens.shape[1] == n // spt, label, f"encode of {n} samples gives {tokens.shape[1]} tokens, "
                f"expected {n // spt} ({spt} samples per token)")
    else:
        _expect(tokens.shape[1] >= want_n, label, f"{tokens.shape[1]} tokens do not cover {n} samples")
    _expect(int(tokens.min()) >= 0 and int(tokens.max()) < size, label,
            f"tokens span {int(tokens.min())}..{int(tokens.max())}, outside [0, codebook_size={size})")
    ragged = n - spt // 2 - 1
    if ragged > 0:
        got = codec.encode(wav[:1, :ragged]).shape[1]
        _expect(got >= -(-ragged // spt), label, f"encode of {ragged} samples gives {got} tokens, too few to cover it")
    pcm = codec.decode(tokens)
    _expect(tuple(pcm.shape) == (2, tokens.shape[1] * spt), label,
            f"decode gives {tuple(pcm.shape)}, expected (2, N * samples_per_token) = {(2, tokens.shape[1] * spt)}")
    _expect(bool(torch.isfinite(pcm).all()), label, "decode gives non-finite samples")

    seqs = [tokens[0], tokens[1]]
    offline = codec.decode(seqs[0][None])[0]
    streamed = torch.cat(list(_codec_stream(codec.streaming_decoder(first_chunk, chunk, context), seqs[0], step)))
    report: dict[str, float] = {}
    if compare == "samples":
        scale = float(offline.abs().max()) + 1e-8
        report["stream_max_abs"] = _expect_close(
            label, "streaming decoder vs decode", streamed, offline, atol * scale,
            f" (context={context} tokens must cover the decoder's receptive field; for a phase-estimating "
            "decoder use compare='log_mel')")
    else:
        from omnikit.components.codecs.streaming import log_mel_distance

        _expect(tuple(streamed.shape) == tuple(offline.shape), label,
                f"streaming decoder gives {tuple(streamed.shape)} samples, decode {tuple(offline.shape)}")
        dist = log_mel_distance(streamed, offline, sr)
        _expect(dist <= log_mel_tol, label, f"streaming decoder vs decode: log-mel distance {dist:.3g} > "
                f"{log_mel_tol:g}")
        report["stream_log_mel"] = dist

    def streams() -> list[Iterator[Tensor]]:
        return [_codec_stream(codec.streaming_decoder(first_chunk, chunk, context), s, step) for s in seqs]

    separate = [torch.cat(list(s)) for s in streams()]
    mixed = _interleave(streams())
    for i in range(2):
        _expect_close(label, f"interleaved streaming decoder {i} vs alone", torch.cat(mixed[i]), separate[i], 1e-6,
                      " (each streaming_decoder() must hold its own state)")
    reused = codec.streaming_decoder(first_chunk, chunk, context)
    list(_codec_stream(reused, seqs[0], step))
    _expect_close(label, "a flushed streaming decoder on a new stream vs a new decoder",
                  torch.cat(list(_codec_stream(reused, seqs[1], step))), separate[1], 1e-6,
                  " (flush must reset the decoder)")

    if callable(getattr(codec, "reconstruction_loss", None)):
        trainee = copy.deepcopy(codec)  # a training hook may initialise codebooks on its first batch: not ours
        with torch.enable_grad():
            losses = trainee.reconstruction_loss(wav)
        loss = losses.get("loss") if isinstance(losses, dict) else None
        _expect(isinstance(loss, Tensor) and loss.dim() == 0 and bool(torch.isfinite(loss)), label,
                "reconstruction_loss must return a dict with a finite scalar 'loss'")
    if isinstance(codec, torch.nn.Module):
        other = round_trip(codec, _rebuild(codec, fresh, seed))
        _expect(torch.equal(other.encode(wav), tokens), label, "encode differs after a state-dict round trip "
                "(is every fitted tensor a registered buffer or parameter?)")
        _expect_close(label, "decode after a state-dict round trip", other.decode(tokens), pcm, 0.0)
    return report


# ------------------------------------------------------------------ speech decoder
@torch.no_grad()
def check_speech_decoder(
    decoder: Any,
    *,
    cond_dim: int,
    codebook_size: int,
    text_len: int = 6,
    codec_tokens: int = 12,
    use_hidden: bool = True,
    max_tokens: int = 24,
    first_chunk: int = 3,
    chunk: int = 5,
    generate_kwargs: dict[str, Any] | None = None,
    atol: float = 1e-5,
    seed: int = 0,
    fresh: Factory | None = None,
) -> dict[str, float]:
    """Check a speech decoder on random conditioning (eval mode).

    - contract; teacher-forced ``forward`` on a padded batch of two gives a dict with a finite scalar ``"loss"``;
    - ``generate`` accepts the keywords the session passes (``top_k``, ``repetition_penalty``, ``max_tokens``,
      ``first_chunk``, ``chunk``, ``generator``, ``timings``, ``text``, ``codec``; override or add with
      ``generate_kwargs``) and yields non-empty 1-D long chunks of ids in ``[0, codebook_size)``, at most
      ``max_tokens`` in all;
    - streaming equals offline: the tokens do not depend on the chunk sizes (``first_chunk``/``chunk`` versus
      one chunk of ``max_tokens``), with the same seeded generator;
    - explicit state: two segments generated interleaved equal two generated one after the other;
    - the state dict round-trips into a fresh instance (``fresh()``, else ``type(decoder)(config,
      cond_dim=..., codebook_size=...)``): identical loss and tokens.
    """
    label = _label(decoder, "speech_decoder")
    check_contract(decoder, "speech_decoder")
    _eval(decoder)
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(2, text_len, cond_dim, generator=g)
    hidden = torch.randn(2, text_len, cond_dim, generator=g) if use_hidden else None
    lens = torch.tensor([text_len, max(1, text_len - 2)])
    tokens = torch.randint(0, codebook_size, (2, codec_tokens), generator=g)
    token_lens = torch.tensor([codec_tokens, max(1, codec_tokens - 3)])

    def loss_of(model: Any) -> Tensor:
        out = _call(model, text, lens, hidden, lens if use_hidden else None, tokens, token_lens)
        loss = out.get("loss") if isinstance(out, dict) else None
        _expect(isinstance(loss, Tensor) and loss.dim() == 0 and bool(torch.isfinite(loss)), label,
                "forward must return a dict with a finite scalar 'loss'")
        return loss

    loss = loss_of(decoder)

    def gen(model: Any, i: int, first: int, size: int) -> Iterator[Tensor]:
        kwargs = dict(top_k=2, repetition_penalty=1.0, max_tokens=max_tokens, first_chunk=first, chunk=size,
                      generator=torch.Generator().manual_seed(seed + i), timings={}, text="Hello there.",
                      codec=None)
        kwargs.update(generate_kwargs or {})
        h = hidden[i : i + 1] if hidden is not None else None
        return iter(model.generate(text[i : i + 1], h, **kwargs))

    def tokens_of(chunks: list[Tensor]) -> Tensor:
        for c in chunks:
            _expect(isinstance(c, Tensor) and c.dim() == 1 and c.dtype == torch.long and c.numel() > 0, label,
                    "generate must yield non-empty 1-D long tensors")
            _expect(int(c.min()) >= 0 and int(c.max()) < codebook_size, label,
                    f"generate yields ids {int(c.min())}..{int(c.max())}, outside [0, codebook_size={codebook_size})")
        return torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.long)

    chunked = [tokens_of(list(gen(decoder, i, first_chunk, chunk))) for i in range(2)]
    for i in range(2):
        _expect(chunked[i].numel() <= max_tokens, label, f"generate gave {chunked[i].numel()} tokens, "
                f"more than max_tokens={max_tokens}")
        whole = tokens_of(list(gen(decoder, i, max_tokens, max_tokens)))
        _expect(torch.equal(chunked[i], whole), label, "generated tokens depend on first_chunk/chunk "
                f"({chunked[i].tolist()} vs {whole.tolist()})")
    mixed = _interleave([gen(decoder, i, first_chunk, chunk) for i in range(2)])
    for i in range(2):
        _expect(torch.equal(tokens_of(mixed[i]), chunked[i]), label, f"segment {i} generated interleaved with "
                "another differs from alone (per-segment state must live inside the generate call)")
    if isinstance(decoder, torch.nn.Module):
        other = round_trip(decoder, _rebuild(decoder, fresh, seed, cond_dim=cond_dim, codebook_size=codebook_size))
        _expect_close(label, "loss after a state-dict round trip", loss_of(other), loss, 0.0)
        _expect(torch.equal(tokens_of(list(gen(other, 0, first_chunk, chunk))), chunked[0]), label,
                "generated tokens differ after a state-dict round trip")
    return {"loss": float(loss), "tokens": float(chunked[0].numel())}


# ------------------------------------------------------------------ VAD
def _vad_stream(vad: Any, wav: Tensor) -> Iterator[float]:
    state = vad.init_state()
    for i in range(0, wav.numel() - vad.window + 1, vad.window):
        p, state = vad.speech_prob(wav[i : i + vad.window], state)
        yield p


def check_vad(
    vad: Any,
    *,
    wav: Tensor | None = None,
    seconds: float = 1.0,
    seed: int = 0,
    fresh: Factory | None = None,
) -> dict[str, float]:
    """Check a VAD on a 1-D signal (``wav``, else silence-noise followed by :func:`speech_like`).

    A VAD has no full-sequence twin; its streaming checks are about state:

    - contract; ``sample_rate`` and ``window`` positive; the optional ``threshold`` in ``[0, 1]``;
    - ``speech_prob`` gives a float probability in ``[0, 1]`` per ``window`` samples;
    - the same stream twice gives the same probabilities, two interleaved streams equal two separate ones, and
      ``speech_prob`` twice from one state gives the same probability and next probability (the state is a
      value);
    - a ``torch.nn.Module`` VAD's state dict round-trips with identical probabilities.
    """
    label = _label(vad, "vad")
    check_contract(vad, "vad")
    _eval(vad)
    sr, win = int(vad.sample_rate), int(vad.window)
    _expect(sr > 0 and win > 0, label, f"sample_rate {sr} and window {win} must be positive")
    threshold = getattr(vad, "threshold", None)
    if threshold is not None:
        _expect(0.0 <= float(threshold) <= 1.0, label, f"threshold {threshold} outside [0, 1]")
    if wav is None:
        g = torch.Generator().manual_seed(seed)
        half = int(seconds * sr / 2)
        wav = torch.cat([0.002 * torch.randn(half, generator=g), speech_like(seconds / 2, sr, seed)])
    other_wav = torch.flip(wav, [0]) * 0.5
    _expect(wav.numel() >= 3 * win, label, f"the signal needs at least 3 windows of {win} samples")
    probs = list(_vad_stream(vad, wav))
    for p in probs:
        _expect(isinstance(p, float) and 0.0 <= p <= 1.0, label, f"speech_prob gave {p!r}, expected a float in [0, 1]")
    _expect(list(_vad_stream(vad, wav)) == probs, label, "the same stream twice gives different probabilities")
    other = list(_vad_stream(vad, other_wav))
    mixed = _interleave([_vad_stream(vad, wav), _vad_stream(vad, other_wav)])
    _expect(mixed == [probs, other], label, "interleaved streams differ from separate ones "
            "(streaming state must live in the state object, not in the VAD)")
    _, s1 = vad.speech_prob(wav[:win], vad.init_state())
    p_a, s_a = vad.speech_prob(wav[win : 2 * win], s1)
    p_b, s_b = vad.speech_prob(wav[win : 2 * win], s1)
    nxt = wav[2 * win : 3 * win]
    _expect(p_a == p_b and vad.speech_prob(nxt, s_a)[0] == vad.speech_prob(nxt, s_b)[0], label,
            "speech_prob twice from one state differs (it must not modify the state it is given)")
    if isinstance(vad, torch.nn.Module):
        twin = round_trip(vad, _rebuild(vad, fresh, seed))
        _expect(list(_vad_stream(twin, wav)) == probs, label, "probabilities differ after a state-dict round trip")
    return {"max_prob": max(probs), "min_prob": min(probs)}


# ------------------------------------------------------------------ duplex policy
def _value(decision: Any) -> str:
    return str(getattr(decision, "value", decision))


def check_duplex_policy(policy: Any, *, chunks: int = 60, chunk_ms: float = 160.0, seed: int = 0) -> dict[str, int]:
    """Check a duplex policy on random chunk streams (speech flags and state-head probabilities, some missing).

    - contract; every decision is ``listen``, ``respond`` or ``ignore``;
    - a terminal decision leaves the state equal to a fresh ``init_state()`` (for dataclass states);
    - explicit state: two sessions' chunks interleaved give each the decisions it gets alone.
    """
    label = _label(policy, "duplex_policy")
    check_contract(policy, "duplex_policy")

    def inputs(i: int) -> list[dict[str, Any]]:
        g = torch.Generator().manual_seed(seed + i)
        out = []
        for _ in range(chunks):
            probs = torch.softmax(3 * torch.randn(3, generator=g), -1)
            out.append({"is_speech": bool(torch.rand(1, generator=g) < 0.5),
                        "state_probs": probs if bool(torch.rand(1, generator=g) < 0.8) else None,
                        "chunk_ms": chunk_ms})
        return out

    def run(xs: list[dict[str, Any]]) -> Iterator[str]:
        state = policy.init_state()
        for x in xs:
            d = _value(policy.on_chunk(state, **x))
            _expect(d in ("listen", "respond", "ignore"), label, f"on_chunk returned {d!r}")
            if d != "listen" and dataclasses.is_dataclass(state):
                _expect(state == policy.init_state(), label, f"after {d} the state is {state}, not a fresh one")
            yield d

    streams = [inputs(0), inputs(1)]
    alone = [list(run(xs)) for xs in streams]
    _expect(alone[0] == list(run(streams[0])), label, "the same chunks twice give different decisions")
    mixed = _interleave([run(xs) for xs in streams])
    _expect(mixed == alone, label, "interleaved sessions differ from separate ones (keep per-turn state in the "
            "state object)")
    return {d: alone[0].count(d) for d in ("listen", "respond", "ignore")}
