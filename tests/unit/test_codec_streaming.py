"""The generic windowed streaming decoder: chunk schedule, context handling, equality with offline decoding."""

import pytest
import torch

from omnikit.components.codecs.streaming import WindowedStreamingDecoder, log_mel_distance, stream_decode

SPT = 4  # samples per token of the toy codecs below

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, more threads make these tiny ops far slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)



def pointwise_decode(tokens: torch.Tensor) -> torch.Tensor:
    """Each token -> SPT samples; no context needed, so streaming must be exact."""
    return tokens.float().repeat_interleave(SPT)


def smoothing_decode(tokens: torch.Tensor) -> torch.Tensor:
    """A decoder with a 3-token receptive field on each side (moving average over 7 tokens)."""
    x = tokens.float()[None, None]
    y = torch.nn.functional.avg_pool1d(torch.nn.functional.pad(x, (3, 3), mode="replicate"), 7, stride=1)
    return y[0, 0].repeat_interleave(SPT)


def test_first_chunk_then_chunks_with_right_context():
    dec = WindowedStreamingDecoder(pointwise_decode, SPT, first_chunk=20, chunk=40, context=10)
    tokens = torch.arange(200)
    sizes, first_at = [], None
    for i in range(tokens.numel()):
        out = dec.push(tokens[i : i + 1])
        if out.numel():
            first_at = first_at if first_at is not None else i + 1
            sizes.append(out.numel() // SPT)
    sizes.append(dec.flush().numel() // SPT)
    assert first_at == 30  # 20 new tokens + 10 tokens of right context
    assert sizes[:3] == [20, 40, 40]
    assert sum(sizes) == 200


def test_stream_equals_offline_when_receptive_field_fits_context():
    tokens = torch.randint(0, 50, (137,), generator=torch.Generator().manual_seed(0))
    offline = smoothing_decode(tokens)
    for step in (1, 7, 137):
        streamed = torch.cat(stream_decode(WindowedStreamingDecoder(smoothing_decode, SPT, 20, 40, 10), tokens, step))
        assert streamed.shape == offline.shape
        assert torch.allclose(streamed, offline, atol=1e-6)


def test_stream_differs_without_context():
    """The context is what makes it exact: with none, window edges see replicate padding instead of neighbours."""
    tokens = torch.randint(0, 50, (137,), generator=torch.Generator().manual_seed(0))
    streamed = torch.cat(stream_decode(WindowedStreamingDecoder(smoothing_decode, SPT, 20, 40, 0), tokens))
    assert not torch.allclose(streamed, smoothing_decode(tokens), atol=1e-3)


def test_flush_resets_for_a_new_stream():
    dec = WindowedStreamingDecoder(pointwise_decode, SPT, 2, 3, 1)
    first = torch.cat(stream_decode(dec, torch.tensor([1, 2, 3, 4, 5])))
    second = torch.cat(stream_decode(dec, torch.tensor([9, 8])))
    assert torch.equal(first, pointwise_decode(torch.tensor([1, 2, 3, 4, 5])))
    assert torch.equal(second, pointwise_decode(torch.tensor([9, 8])))


def test_log_mel_distance_separates_same_from_different():
    g = torch.Generator().manual_seed(0)
    t = torch.arange(8000) / 8000
    a = torch.sin(2 * torch.pi * 220 * t)
    assert log_mel_distance(a, a, 8000) < 1e-6
    assert log_mel_distance(a, 0.1 * torch.randn(8000, generator=g), 8000) > 1.0
