"""chunk_transformer: streaming == masked full forward, bounded state, CTC training, paper size."""

import pytest
import torch

from omnikit.audio.features import utterance_features
from omnikit.audio.frontend import StreamingFrontend
from omnikit.components.adapters.cnn_subsampling import CNNSubsamplingAdapter, CNNSubsamplingConfig
from omnikit.components.encoders.chunk_transformer import ChunkTransformerConfig, ChunkTransformerEncoder
from omnikit.data.char_vocab import CharVocab


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors on a shared 2-core machine: one thread avoids contention overhead."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def stream_features(wav: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """Push ``wav`` through the front-end in random piece sizes (1..3000 samples); return the chunks."""
    g = torch.Generator().manual_seed(seed)
    fe = StreamingFrontend()
    state = fe.init_state()
    chunks: list[torch.Tensor] = []
    i = 0
    while i < wav.numel():
        n = int(torch.randint(1, 3000, (1,), generator=g))
        out, state = fe.push(wav[i : i + n], state)
        chunks += out
        i += n
    out, _ = fe.flush(state)
    return chunks + out


def stream_encoder(encoder, adapter, wav: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Front-end -> encoder.forward_chunk (-> adapter.forward_chunk), one 160 ms chunk at a time."""
    enc_state = encoder.init_state()
    ad_state = adapter.init_state() if adapter is not None else None
    hs, ys = [], []
    with torch.no_grad():
        for chunk in stream_features(wav, seed):
            h, enc_state = encoder.forward_chunk(chunk.unsqueeze(0), enc_state)
            hs.append(h)
            if adapter is not None:
                y, ad_state = adapter.forward_chunk(h, ad_state)
                ys.append(y)
    return torch.cat(hs, 1), (torch.cat(ys, 1) if ys else None)


def tiny(**kw) -> ChunkTransformerEncoder:
    args = dict(layers=2, dim=32, heads=4, ffn_dim=64, left_chunks=2, ctc_vocab=0)
    args.update(kw)
    return ChunkTransformerEncoder(ChunkTransformerConfig(**args), input_dim=80)


def _cmvn_like(enc: ChunkTransformerEncoder) -> None:
    """Fbank of random noise sits around 10-15; give the encoder a CMVN so activations are sane."""
    enc.cmvn.mean.fill_(12.0)
    enc.cmvn.istd.fill_(0.3)


@pytest.mark.parametrize("left_chunks", [2, -1])
@pytest.mark.parametrize("num_samples", [2560, 9000, 21000])
def test_streaming_equals_full_forward_with_adapter(num_samples, left_chunks):
    torch.manual_seed(num_samples + left_chunks)
    enc = tiny(left_chunks=left_chunks).eval()
    _cmvn_like(enc)
    ad = CNNSubsamplingAdapter(CNNSubsamplingConfig(), in_dim=enc.output_dim, out_dim=48).eval()
    wav = torch.randn(num_samples) * 0.1
    feats = utterance_features(wav)
    with torch.no_grad():
        full = enc(feats.unsqueeze(0), torch.tensor([feats.shape[0]]))
        full_y, full_ylens = ad(full.hidden, full.lens)
    h, y = stream_encoder(enc, ad, wav, seed=num_samples)
    assert h.shape == full.hidden.shape == (1, feats.shape[0] // 4, 32)
    assert (h - full.hidden).abs().max() < 1e-4
    assert y.shape == full_y.shape and int(full_ylens) == y.shape[1] == h.shape[1] // 2
    assert (y - full_y).abs().max() < 1e-4


def test_chunk_mask_is_not_full_context():
    """Future frames beyond the current chunk must not change earlier outputs; within-chunk ones do."""
    torch.manual_seed(0)
    enc = tiny().eval()
    feats = torch.randn(1, 64, 80)
    with torch.no_grad():
        a = enc(feats, torch.tensor([64])).hidden
        changed = feats.clone()
        changed[:, 40:] += 1.0  # frames of encoder chunk 2 onwards (input frames 32..47 -> chunk 2)
        b = enc(changed, torch.tensor([64])).hidden
    assert torch.allclose(a[:, :8], b[:, :8], atol=1e-6)  # chunks 0 and 1 unaffected
    assert not torch.allclose(a[:, 8:12], b[:, 8:12], atol=1e-3)


def test_padded_batch_matches_single():
    torch.manual_seed(1)
    enc = tiny().eval()
    long, short = torch.randn(96, 80), torch.randn(64, 80)
    batch = torch.zeros(2, 96, 80)
    batch[0], batch[1, :64] = long, short
    with torch.no_grad():
        out = enc(batch, torch.tensor([96, 64]))
        alone = enc(short.unsqueeze(0), torch.tensor([64]))
    assert out.lens.tolist() == [24, 16]
    assert (out.hidden[1, :16] - alone.hidden[0]).abs().max() < 1e-5


def test_state_stays_bounded_over_60s_stream():
    torch.manual_seed(2)
    enc = tiny(layers=1, dim=16, heads=2, ffn_dim=16, left_chunks=3).eval()
    state = enc.init_state()
    sizes = []
    with torch.no_grad():
        for _ in range(375):  # 375 x 160 ms = 60 s
            out, state = enc.forward_chunk(torch.randn(1, 16, 80), state)
            assert out.shape == (1, 4, 16) and torch.isfinite(out).all()
            sizes.append(state.kv[0][0].shape[2])
    assert max(sizes) == 12 == sizes[-1]  # chunk_size 4 x left_chunks 3
    assert state.tail.shape == (1, 3, 80) and state.frames == 1500


def test_forward_chunk_rejects_misaligned_input_and_keeps_input_state():
    enc = tiny().eval()
    with pytest.raises(ValueError, match="multiple of 16"):
        enc.forward_chunk(torch.randn(1, 10, 80), enc.init_state())
    s0 = enc.init_state()
    with torch.no_grad():
        _, s1 = enc.forward_chunk(torch.randn(1, 16, 80), s0)
        _, s2 = enc.forward_chunk(torch.randn(1, 16, 80), s1)
    assert s0.kv is None and s1.kv[0][0].shape[2] == 4 and s2.kv[0][0].shape[2] == 8


def test_ctc_loss_decreases_on_tiny_batch():
    torch.manual_seed(3)
    vocab = CharVocab()
    enc = tiny(dim=32, ctc_vocab=vocab.size, dropout=0.0, pos_dropout=0.0, dynamic_chunks=True)
    texts = ["hi there", "ok"]
    targets = [torch.tensor(vocab.encode(t)) for t in texts]
    feats = torch.randn(2, 96, 80)
    lens = torch.tensor([96, 80])
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out = enc(feats, lens)
        logp = out.ctc_logits.log_softmax(-1).transpose(0, 1)
        loss = torch.nn.functional.ctc_loss(logp, torch.cat(targets), out.lens,
                                            torch.tensor([len(t) for t in targets]), blank=0, zero_infinity=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_paper_size_on_meta_device():
    with torch.device("meta"):
        enc = ChunkTransformerEncoder(ChunkTransformerConfig(layers=24, dim=1024, heads=16, ffn_dim=4096), input_dim=80)
        ad = CNNSubsamplingAdapter(CNNSubsamplingConfig(), in_dim=1024, out_dim=3584)
    assert sum(p.numel() for p in enc.parameters()) == 357_950_464  # the spec's count, exactly
    assert sum(p.numel() for p in ad.parameters()) == 17_835_520
    assert enc.output_dim == 1024 and enc.ctc_vocab_size == 0


def test_fit_cmvn_normalises_inputs_and_is_saved_in_state_dict():
    enc = tiny()
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(50, 80, generator=g) * 2 + 7 for _ in range(3)]
    enc.fit_cmvn(feats)
    assert torch.allclose(enc.cmvn.mean, torch.cat(feats).mean(0), atol=1e-4)
    state = enc.state_dict()
    assert "cmvn.mean" in state and "cmvn.istd" in state
    fresh = tiny()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.cmvn.istd, enc.cmvn.istd)
