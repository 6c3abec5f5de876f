"""Adapters: shapes, lengths, paper size, and streaming (any chunk sizes) == offline."""

import pytest
import torch

from omnikit.components.adapters.cnn_subsampling import CNNSubsamplingAdapter, CNNSubsamplingConfig
from omnikit.components.adapters.linear import LinearAdapter, LinearAdapterConfig


def _stream(adapter, x, sizes):
    state, outs, i = adapter.init_state(), [], 0
    for n in sizes:
        y, state = adapter.forward_chunk(x[:, i : i + n], state)
        outs.append(y)
        i += n
    return torch.cat(outs, 1), state


@pytest.mark.parametrize("kernel, stride", [(5, 2), (3, 3), (4, 1)])
def test_cnn_streaming_equals_offline(kernel, stride):
    torch.manual_seed(kernel * 10 + stride)
    ad = CNNSubsamplingAdapter(CNNSubsamplingConfig(kernel_size=kernel, stride=stride), in_dim=8, out_dim=6).eval()
    x = torch.randn(1, 30, 8)
    with torch.no_grad():
        y, lens = ad(x, torch.tensor([30]))
        s, state = _stream(ad, x, [4, 1, 3, 7, 2, 4, 4, 5])
    assert y.shape[1] == -(-30 // stride) == int(lens) == s.shape[1]
    assert (y - s).abs().max() < 1e-5
    assert state.cache.shape[1] < kernel + stride  # bounded


def test_cnn_is_causal_and_lengths():
    ad = CNNSubsamplingAdapter(CNNSubsamplingConfig(), in_dim=8, out_dim=6).eval()
    x = torch.randn(2, 12, 8)
    with torch.no_grad():
        y, lens = ad(x, torch.tensor([12, 7]))
        x2 = x.clone()
        x2[:, 9:] = 5.0
        y2, _ = ad(x2, torch.tensor([12, 7]))
    assert lens.tolist() == [6, 4]
    assert torch.allclose(y[:, :5], y2[:, :5])  # output n only sees inputs <= 2n
    assert not torch.allclose(y[:, 5], y2[:, 5])


def test_cnn_two_embeddings_per_160ms_chunk():
    ad = CNNSubsamplingAdapter(CNNSubsamplingConfig(), in_dim=8, out_dim=6).eval()
    state = ad.init_state()
    for _ in range(5):
        y, state = ad.forward_chunk(torch.randn(1, 4, 8), state)
        assert y.shape == (1, 2, 6) and state.cache.shape == (1, 4, 8)


def test_linear_stacking_streaming_equals_offline():
    torch.manual_seed(0)
    ad = LinearAdapter(LinearAdapterConfig(stack=3, hidden_dim=10), in_dim=8, out_dim=6)
    x = torch.randn(1, 20, 8)
    with torch.no_grad():
        y, lens = ad(x, torch.tensor([20]))
        s, state = _stream(ad, x, [4, 5, 1, 10])
    assert y.shape == (1, 6, 6) and int(lens) == 6
    assert (y - s).abs().max() < 1e-5 and state.pending.shape[1] == 2


def test_paper_adapter_size_on_meta():
    with torch.device("meta"):
        ad = CNNSubsamplingAdapter(CNNSubsamplingConfig(), in_dim=1024, out_dim=3584)
    assert sum(p.numel() for p in ad.parameters()) == 17_835_520
    with pytest.raises(ValueError):
        CNNSubsamplingAdapter(CNNSubsamplingConfig(kernel_size=1, stride=2), in_dim=4, out_dim=4)


def test_adapters_move_with_module_to():
    """Regression: a method named ``_apply`` once shadowed nn.Module._apply and broke ``.to()``."""
    for ad in (CNNSubsamplingAdapter(CNNSubsamplingConfig(), in_dim=4, out_dim=3),
               LinearAdapter(LinearAdapterConfig(stack=2), in_dim=4, out_dim=3)):
        ad = ad.to(torch.float64)
        y, _ = ad(torch.randn(1, 8, 4, dtype=torch.float64), torch.tensor([8]))
        assert y.dtype == torch.float64 and y.shape == (1, 4, 3)
