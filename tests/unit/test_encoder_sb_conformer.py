"""sb_conformer: SpeechBrain Conformer behind the omnikit encoder contract; streams like the masked forward."""

import pytest
import torch
from test_encoder_chunk_transformer import one_thread, stream_encoder  # noqa: F401  (autouse fixture)

from omnikit.audio.features import utterance_features
from omnikit.components.adapters.linear import LinearAdapter, LinearAdapterConfig
from omnikit.components.encoders.sb_conformer import SBConformerConfig, SpeechBrainConformerEncoder


def tiny(**kw) -> SpeechBrainConformerEncoder:
    args = dict(layers=2, dim=32, heads=4, ffn_dim=64, kernel_size=7, left_chunks=2)
    args.update(kw)
    enc = SpeechBrainConformerEncoder(SBConformerConfig(**args), input_dim=80)
    enc.cmvn.mean.fill_(12.0)
    enc.cmvn.istd.fill_(0.3)
    return enc


@pytest.mark.parametrize("left_chunks", [2, -1])
@pytest.mark.parametrize("num_samples", [2560, 13000])
def test_streaming_equals_masked_forward(num_samples, left_chunks):
    torch.manual_seed(num_samples)
    enc = tiny(left_chunks=left_chunks).eval()
    ad = LinearAdapter(LinearAdapterConfig(stack=2), in_dim=32, out_dim=24).eval()
    wav = torch.randn(num_samples) * 0.1
    feats = utterance_features(wav)
    with torch.no_grad():
        full = enc(feats.unsqueeze(0), torch.tensor([feats.shape[0]]))
        full_y, _ = ad(full.hidden, full.lens)
    h, y = stream_encoder(enc, ad, wav, seed=num_samples)
    assert h.shape == full.hidden.shape
    assert (h - full.hidden).abs().max() < 1e-4
    assert (y - full_y).abs().max() < 1e-4


def test_streaming_state_bounded_and_ctc_head():
    enc = tiny(left_chunks=1, ctc_vocab=7).eval()
    state = enc.init_state()
    with torch.no_grad():
        for _ in range(20):
            out, state = enc.forward_chunk(torch.randn(1, 16, 80), state)
        full = enc(torch.randn(2, 40, 80), torch.tensor([40, 30]))
    assert out.shape == (1, 4, 32)
    assert state.layers[0].mha_left_context.shape[1] == 4  # chunk_size x left_chunks
    assert full.ctc_logits.shape == (2, 10, 7) and full.lens.tolist() == [10, 7]
    assert enc.ctc_vocab_size == 7 and torch.isfinite(full.hidden).all()


def test_full_context_cannot_stream():
    enc = tiny(chunk_size=0).eval()
    with pytest.raises(ValueError, match="cannot stream"):
        enc.forward_chunk(torch.randn(1, 16, 80), enc.init_state())
