"""The conformance kit (``omnikit.testing``) over the built-in encoders, adapters, codecs, speech decoders, VADs and
duplex policies at tiny sizes, and proof that each check catches the fault it is there for."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from omnikit.components.adapters.cnn_subsampling import CNNSubsamplingAdapter, CNNSubsamplingConfig
from omnikit.components.adapters.linear import LinearAdapter, LinearAdapterConfig
from omnikit.components.codecs.encodec_codec import EncodecCodec
from omnikit.components.codecs.mel_vq import MelVQCodec
from omnikit.components.codecs.waveform_vq import WaveformVQCodec
from omnikit.components.duplex.state_head import StateHeadPolicy, StateHeadPolicyConfig
from omnikit.components.duplex.vad_endpoint import VADEndpointPolicy, VADEndpointPolicyConfig
from omnikit.components.encoders.chunk_transformer import ChunkTransformerConfig, ChunkTransformerEncoder
from omnikit.components.encoders.sb_conformer import SBConformerConfig, SpeechBrainConformerEncoder
from omnikit.components.encoders.whisper_encoder import WhisperEncoder, WhisperEncoderConfig
from omnikit.components.speech_decoders.nar_ar import NARARConfig, NARARSpeechDecoder
from omnikit.components.speech_decoders.nar_duration import NARDurationConfig, NARDurationSpeechDecoder
from omnikit.components.vads.energy import EnergyVAD, EnergyVADConfig
from omnikit.testing import (
    check_adapter,
    check_codec,
    check_duplex_policy,
    check_encoder,
    check_speech_decoder,
    check_vad,
    speech_like,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, more threads make these tiny ops far slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


ENC = dict(layers=2, dim=16, heads=2, ffn_dim=32, left_chunks=2, ctc_vocab=7)


def encoders() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "chunk_transformer": ChunkTransformerEncoder(ChunkTransformerConfig(**ENC)),
        "sb_conformer": SpeechBrainConformerEncoder(SBConformerConfig(**ENC, kernel_size=3)),
        "whisper_encoder": WhisperEncoder(WhisperEncoderConfig(**{**ENC, "chunk_size": 4}, weights="",
                                                               max_positions=64, dropout=0.0)),
    }


@pytest.mark.parametrize("name", ["chunk_transformer", "sb_conformer", "whisper_encoder"])
def test_builtin_encoder_conforms(name):
    report = check_encoder(encoders()[name], chunks=3)
    assert report["stream_max_abs"] < 1e-4


@pytest.mark.parametrize("make", [
    lambda: CNNSubsamplingAdapter(CNNSubsamplingConfig(), in_dim=8, out_dim=6),
    lambda: LinearAdapter(LinearAdapterConfig(stack=2, hidden_dim=10), in_dim=8, out_dim=6),
], ids=["cnn_subsampling", "linear"])
def test_builtin_adapter_conforms(make):
    check_adapter(make(), in_dim=8, out_dim=6)


def tiny_waveform_vq() -> WaveformVQCodec:
    return WaveformVQCodec(WaveformVQCodec.config_class(
        sample_rate=8000, strides=[4, 2], channels=8, code_dim=16, codebook_size=32, resblock_kernels=[3],
        resblock_dilations=[1], kernels=[], stft_resolutions=[[128, 32], [256, 64]], mel_n_fft=256, mel_hop=64,
        n_mels=20))


def fitted_mel_vq(vocoder: str) -> MelVQCodec:
    codec = MelVQCodec(MelVQCodec.config_class(codebook_size=16, decoder_dim=16, griffin_lim_iters=4,
                                               kmeans_iters=3, vocoder=vocoder))
    codec.fit_from_data([speech_like(1.0, 16_000, s) for s in range(2)])
    torch.nn.init.normal_(codec.decoder.out.weight, std=0.1)  # a learned correction that is not zero
    return codec


def test_waveform_vq_conforms():
    check_codec(tiny_waveform_vq(), seconds=0.1)


def test_encodec_conforms():
    codec = EncodecCodec(EncodecCodec.config_class(n_filters=4, dimension=16, lstm=0))
    check_codec(codec, seconds=0.3, context=20, step=4)


@pytest.mark.parametrize("vocoder", ["griffin_lim", "learned"])
def test_mel_vq_conforms_in_the_log_mel_domain(vocoder):
    """Griffin-Lim re-estimates phase per window: streaming equals offline in log-mel, not sample by sample."""
    codec = fitted_mel_vq(vocoder)
    # the state-dict twin must carry the fitted codebook: build it unfitted with the same config
    report = check_codec(codec, seconds=1.5, step=1, compare="log_mel", log_mel_tol=0.1,
                         fresh=lambda: MelVQCodec(dataclasses.replace(codec.config)))
    assert report["stream_log_mel"] < 0.1


def test_builtin_speech_decoders_conform():
    common = dict(dim=16, heads=2, ffn_dim=32, dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(0)
    nar_ar = NARARSpeechDecoder(NARARConfig(**common, layers=1, prefix_layers=1, prenet_layers=1),
                                cond_dim=24, codebook_size=16)
    check_speech_decoder(nar_ar, cond_dim=24, codebook_size=16)
    for sample in (False, True):
        nar_duration = NARDurationSpeechDecoder(
            NARDurationConfig(**common, encoder_layers=1, decoder_layers=1, duration_dim=8, align_dim=8,
                              sample=sample), cond_dim=24, codebook_size=16)
        check_speech_decoder(nar_duration, cond_dim=24, codebook_size=16)


def test_energy_vad_conforms():
    report = check_vad(EnergyVAD(EnergyVADConfig()))
    assert report["min_prob"] < 0.5 < report["max_prob"]  # the test signal is silence, then speech


def test_silero_vad_conforms():
    pytest.importorskip("silero_vad", reason="the silero-vad package (which ships the weights) is not installed")
    from omnikit.components.vads.silero import SileroVAD, SileroVADConfig

    check_vad(SileroVAD(SileroVADConfig()), seconds=0.5)


def test_builtin_duplex_policies_conform():
    counts = check_duplex_policy(StateHeadPolicy(StateHeadPolicyConfig()))
    assert counts["respond"] and counts["ignore"]  # the random stream exercises the terminal decisions
    check_duplex_policy(VADEndpointPolicy(VADEndpointPolicyConfig(endpoint_ms=320, min_speech_ms=160)))


# ------------------------------------------------------------------ each check catches its fault
class StatefulAdapter(LinearAdapter):
    """Keeps its pending frames on the module, not in the state: streams leak into each other."""

    def init_state(self):
        self._pending = None
        return super().init_state()

    def forward_chunk(self, x, state):
        state.pending = getattr(self, "_pending", None)
        y, new = super().forward_chunk(x, state)
        self._pending = new.pending
        return y, new


class FullContextStreamer(CNNSubsamplingAdapter):
    """Forgets its cache between chunks: the stream no longer equals the full-sequence forward."""

    def forward_chunk(self, x, state):
        return super().forward_chunk(x, self.init_state())


class UnsavedScale(LinearAdapter):
    """A scale held as a plain attribute: it is not in the state dict, so a reloaded twin differs."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.scale = 1.0 + torch.rand(()).item()

    def forward(self, x, lens):
        y, lens = super().forward(x, lens)
        return y * self.scale, lens

    def forward_chunk(self, x, state):
        y, state = super().forward_chunk(x, state)
        return y * self.scale, state


@pytest.mark.parametrize(("cls", "config", "fault"), [
    (StatefulAdapter, LinearAdapterConfig(stack=2), "interleaved stream 0 vs alone"),
    (FullContextStreamer, CNNSubsamplingConfig(), r"streaming \(forward_chunk\) vs offline"),
    (UnsavedScale, LinearAdapterConfig(), "state-dict round trip"),
])
def test_adapter_faults_are_caught(cls, config, fault):
    # 3-frame chunks: a 2-frame stack leaves a frame pending across chunk boundaries
    check_adapter(LinearAdapter(LinearAdapterConfig(stack=2), in_dim=8, out_dim=6), in_dim=8, out_dim=6,
                  frames_per_chunk=3)
    with pytest.raises(AssertionError, match=fault):
        check_adapter(cls(config, in_dim=8, out_dim=6), in_dim=8, out_dim=6, frames_per_chunk=3)


def test_codec_without_stream_context_is_caught():
    with pytest.raises(AssertionError, match="streaming decoder vs decode"):
        check_codec(tiny_waveform_vq(), seconds=0.1, context=0)


def test_vad_that_mutates_its_state_is_caught():
    class Mutating(EnergyVAD):
        def speech_prob(self, pcm, state):
            p, new = super().speech_prob(pcm, state)
            state.smoothed_db = new.smoothed_db  # updates the caller's state in place
            return p, state

    with pytest.raises(AssertionError, match="speech_prob twice from one state"):
        check_vad(Mutating(EnergyVADConfig(smoothing=0.5)))


def test_a_missing_member_fails_the_contract_check():
    class NoWindow:
        sample_rate = 16_000

        def init_state(self):
            return None

        def speech_prob(self, pcm, state):
            return 0.0, state

    with pytest.raises(AssertionError, match=r"vad NoWindow does not meet the vad contract .*: missing window$"):
        check_vad(NoWindow())
