"""mel_vq: token rate, k-means fit, learned decoder training, streaming tolerance, save/load."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from omnikit.components.codecs.kmeans import kmeans, nearest
from omnikit.components.codecs.mel_vq import MelVQCodec
from omnikit.components.codecs.streaming import WindowedStreamingDecoder, log_mel_distance, stream_decode
from omnikit.interfaces import Codec

SR = 16_000

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, more threads make these tiny ops far slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)



def speechlike(seconds: float, seed: int) -> torch.Tensor:
    """Harmonic tones with gliding pitch and a syllable-rate envelope, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    f0 = 110 + 60 * torch.rand(1, generator=g) + 30 * torch.sin(2 * torch.pi * 0.7 * t)
    phase = 2 * torch.pi * torch.cumsum(f0 / SR, 0)
    wav = sum(torch.sin(k * phase) / k for k in range(1, 12))
    env = (torch.sin(2 * torch.pi * (3 + torch.rand(1, generator=g)) * t) > -0.3).float()
    return 0.1 * wav * env + 0.003 * torch.randn(t.shape, generator=g)


def small_codec(**overrides) -> MelVQCodec:
    cfg = MelVQCodec.config_class(codebook_size=64, decoder_dim=64, griffin_lim_iters=8, kmeans_iters=10)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return MelVQCodec(cfg)


@pytest.fixture(scope="module")
def fitted() -> MelVQCodec:
    codec = small_codec()
    codec.fit_from_data([speechlike(1.0, s) for s in range(3)])
    return codec


def test_protocol_shapes_and_token_rate(fitted):
    assert isinstance(fitted, Codec)
    assert fitted.frame_rate == 40.0 and fitted.sample_rate == SR
    wav = torch.stack([speechlike(1.0, 5), speechlike(1.0, 6)])
    tokens = fitted.encode(wav)
    assert tokens.shape == (2, 40) and tokens.dtype == torch.long
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 64
    assert fitted.encode(speechlike(0.51, 7)[None]).shape == (1, 21)  # ceil(8160 / 400)
    for vocoder in ("griffin_lim", "learned"):
        fitted.config.vocoder = vocoder
        out = fitted.decode(tokens)
        assert out.shape == (2, 16_000) and torch.isfinite(out).all()
    fitted.config.vocoder = "griffin_lim"


def test_kmeans_beats_random_codebook():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(300, 8, generator=g) * 0.1 + torch.randn(1, 8, generator=g) * 3 for _ in range(10)])
    centroids, _ = kmeans(x, 10, iters=20)
    random_pick = x[torch.randperm(x.shape[0], generator=g)[:10]]
    assert nearest(x, centroids)[1].mean() < 0.5 * nearest(x, random_pick)[1].mean()


def test_fit_reduces_quantisation_error(fitted):
    held_out = speechlike(1.0, 9)[None]
    assert fitted.quantisation_error(held_out) < 0.1 * small_codec().quantisation_error(held_out)
    assert bool(fitted.fitted)


def test_griffin_lim_decode_resembles_input(fitted):
    wav = speechlike(1.0, 1)
    out = fitted.decode(fitted.encode(wav[None]))[0]
    assert log_mel_distance(out, wav, SR) < 0.5 * log_mel_distance(torch.zeros_like(wav) + 1e-4, wav, SR)


def test_learned_decoder_loss_falls():
    torch.manual_seed(0)
    codec = small_codec(codebook_size=16)  # coarse, so the codebook lookup leaves error to refine
    wavs = [speechlike(0.5, s) for s in range(2)]
    codec.fit_from_data(wavs)
    batch = torch.stack(wavs)
    opt = torch.optim.Adam(codec.decoder.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        out = codec.reconstruction_loss(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert set(out) >= {"loss", "log_mel_l1", "codebook_l1"}
    assert float(out["log_mel_l1"]) < float(out["codebook_l1"])  # refines the plain codebook lookup
    assert losses[-1] < 0.85 * losses[0]
    assert codec.codebook.grad is None  # the codebook is a k-means buffer, not trained by gradient


def test_untrained_learned_vocoder_starts_at_the_griffin_lim_path():
    """Zero-initialised correction: the learned path's log-mel is the codebook's, so it decodes the same audio."""
    codec = small_codec()
    codec.fit_from_data([speechlike(0.5, 0)])
    tokens = codec.encode(speechlike(0.5, 1)[None])
    with torch.no_grad():
        assert torch.equal(codec.predict_log_mel(tokens), codec._codebook_log_mel(tokens))
    griffin_lim = codec.decode(tokens)
    codec.config.vocoder = "learned"
    assert torch.allclose(codec.decode(tokens), griffin_lim, atol=1e-6)


def test_inverse_mel_matches_torchaudio_inverse_mel_scale(fitted):
    import torchaudio

    log_mel = fitted.log_mel(speechlike(0.5, 2)[None])
    inverse = torchaudio.transforms.InverseMelScale(n_stft=fitted.n_freq, n_mels=80, sample_rate=SR)
    expected = inverse(torch.exp(log_mel) - fitted.config.log_eps)
    assert torch.allclose(fitted.inverse_mel_magnitude(log_mel), expected, rtol=1e-3, atol=1e-4)


def test_learned_mel_stream_is_exact(fitted):
    """The learned decoder's receptive field (sum of dilations) fits the context: windows reproduce offline."""
    assert fitted.decoder.receptive_field <= 10
    torch.nn.init.normal_(fitted.decoder.out.weight, std=0.1)  # a non-trivial correction for this test
    tokens = fitted.encode(speechlike(2.0, 3)[None])[0]
    per_token = fitted.config.frames_per_token * fitted.config.n_mels

    def mel_frames(t: torch.Tensor) -> torch.Tensor:
        return fitted.predict_log_mel(t[None])[0].T.reshape(-1)

    with torch.no_grad():
        offline = mel_frames(tokens)
        dec = WindowedStreamingDecoder(mel_frames, per_token, 20, 40, 10)
        streamed = torch.cat(stream_decode(dec, tokens, step=3))
    assert torch.allclose(streamed, offline, atol=1e-4)


@pytest.mark.parametrize("vocoder", ["griffin_lim", "learned"])
def test_griffin_lim_stream_matches_offline_in_log_mel(fitted, vocoder):
    """Griffin-Lim re-estimates phase per window, so the tolerance is in the log-mel domain: the stream must be
    far closer to offline decoding than offline decoding is to the source audio."""
    fitted.config.vocoder = vocoder
    wav = speechlike(2.5, 4)
    tokens = fitted.encode(wav[None])[0]
    offline = fitted.decode(tokens[None])[0]
    streamed = torch.cat(stream_decode(fitted.streaming_decoder(), tokens, step=1))
    fitted.config.vocoder = "griffin_lim"
    assert streamed.shape == offline.shape
    assert log_mel_distance(streamed, offline, SR) < 0.1
    assert log_mel_distance(streamed, offline, SR) < 0.5 * log_mel_distance(offline, wav[: offline.numel()], SR)


def test_state_dict_round_trips_through_safetensors(fitted, tmp_path):
    path = tmp_path / "codec.safetensors"
    save_file({k: v.contiguous() for k, v in fitted.state_dict().items()}, str(path))
    fresh = small_codec()
    fresh.load_state_dict(load_file(str(path)))
    wav = speechlike(1.0, 8)[None]
    assert torch.equal(fresh.encode(wav), fitted.encode(wav))
    assert bool(fresh.fitted)


def test_rejects_unknown_vocoder():
    with pytest.raises(ValueError, match="vocoder"):
        small_codec(vocoder="hifigan")


def test_decode_of_a_single_token_does_not_crash():
    """A streaming tail can be one token: shorter than Griffin-Lim's STFT window."""
    from omnikit.components.codecs.mel_vq import MelVQCodec, MelVQConfig

    codec = MelVQCodec(MelVQConfig(codebook_size=8, vocoder="griffin_lim")).eval()
    wav = codec.decode(torch.tensor([[3]]))
    assert wav.shape == (1, codec.samples_per_token) and torch.isfinite(wav).all()


def test_token_features_snap_back_to_the_encoded_tokens(fitted):
    # the optional members a feature-regressing decoder uses: normalised features, snapped to the codebook
    wav = speechlike(0.7, 11)[None]
    feats = fitted.token_features(wav)
    assert feats.shape == (1, fitted.encode(wav).shape[1], fitted.token_dim)
    torch.testing.assert_close(feats * fitted.feat_std + fitted.feat_mean, fitted.token_vectors(wav))
    assert torch.equal(fitted.nearest_tokens(feats), fitted.encode(wav))
    # a codebook entry's own (normalised) vector snaps to that entry
    entries = ((fitted.codebook[[3, 0, 7]] - fitted.feat_mean) / fitted.feat_std)[None]
    assert fitted.nearest_tokens(entries).tolist() == [[3, 0, 7]]
