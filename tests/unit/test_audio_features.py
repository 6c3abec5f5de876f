"""Fbank, CMVN and the streaming front-end (streaming == offline)."""

from pathlib import Path

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from omnikit.audio.cmvn import GlobalCMVN
from omnikit.audio.features import fbank, utterance_features
from omnikit.audio.frontend import StreamingFrontend


def test_fbank_matches_kaldi_on_int16_scale():
    wav = torch.randn(16000) * 0.1
    ref = kaldi.fbank((wav * 32768).unsqueeze(0), num_mel_bins=80, frame_length=25, frame_shift=10, dither=0.0)
    out = fbank(wav)
    assert out.shape == (98, 80)
    assert torch.allclose(out, ref)


def test_utterance_features_pad_to_whole_chunks():
    assert utterance_features(torch.zeros(0)).shape == (0, 80)
    assert utterance_features(torch.randn(1)).shape == (16, 80)
    assert utterance_features(torch.randn(2560)).shape == (16, 80)
    assert utterance_features(torch.randn(2561)).shape == (32, 80)


def _stream(frontend: StreamingFrontend, wav: torch.Tensor, sizes) -> torch.Tensor:
    state = frontend.init_state()
    chunks, i, k = [], 0, 0
    while i < wav.numel():
        n = sizes[k % len(sizes)]
        out, state = frontend.push(wav[i : i + n], state)
        assert all(c.shape == (16, 80) for c in out)
        chunks += out
        i, k = i + n, k + 1
    out, state = frontend.flush(state)
    chunks += out
    return torch.cat(chunks) if chunks else torch.zeros(0, 80)


@pytest.mark.parametrize("num", [400, 2560, 7000, 16000 + 77])
def test_streaming_frontend_equals_offline(num):
    g = torch.Generator().manual_seed(num)
    wav = torch.randn(num, generator=g) * 0.2
    fe = StreamingFrontend()
    offline = fe.offline(wav)
    random_sizes = torch.randint(1, 3000, (50,), generator=g).tolist()
    for sizes in ([256], [512], [2560], random_sizes):
        streamed = _stream(fe, wav, sizes)
        assert streamed.shape == offline.shape
        assert torch.allclose(streamed, offline, atol=1e-5)


def test_frontend_state_is_not_mutated_and_bounded():
    fe = StreamingFrontend()
    st = fe.init_state()
    _, st1 = fe.push(torch.randn(1000), st)
    assert st.buffer.numel() == 240  # input state untouched
    for _ in range(50):
        _, st1 = fe.push(torch.randn(1000), st1)
        assert st1.buffer.numel() < 240 + 2560
    chunks, st2 = fe.flush(st1)
    assert len(chunks) == 1 and st2.buffer.numel() == 240


def test_cmvn_from_features_and_json_roundtrip(tmp_path: Path):
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(n, 80, generator=g) * 3 + 5 for n in (10, 37, 100)]
    cmvn = GlobalCMVN.compute(feats)
    allf = torch.cat(feats)
    assert torch.allclose(cmvn.mean, allf.mean(0), atol=1e-4)
    assert torch.allclose(cmvn.istd, 1 / allf.std(0, unbiased=False), atol=1e-4)
    normed = cmvn(allf)
    assert normed.mean(0).abs().max() < 1e-4 and (normed.std(0, unbiased=False) - 1).abs().max() < 1e-3
    path = cmvn.save_json(tmp_path / "cmvn.json")
    back = GlobalCMVN.load_json(path)
    assert torch.allclose(back.mean, cmvn.mean) and torch.allclose(back.istd, cmvn.istd)
    import json
    assert set(json.loads(path.read_text())) == {"mean_stat", "var_stat", "frame_num"}
    # synthesised stats (no raw sums) reload to the same normalisation
    fresh = GlobalCMVN(80, cmvn.mean, cmvn.istd)
    again = GlobalCMVN.load_json(fresh.save_json(tmp_path / "c2.json"))
    assert torch.allclose(again.istd, cmvn.istd, rtol=1e-4)


def test_cmvn_bad_file(tmp_path: Path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="x.json"):
        GlobalCMVN.load_json(bad)
