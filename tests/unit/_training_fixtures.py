"""Tiny models and synthetic data shared by the training and objective tests."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from omnikit.data.collate import SpeechBatchDataset
from omnikit.data.synthetic import SyntheticSpeechDataset, SyntheticTonesConfig

TINY_MODEL = {
    "encoder": {"name": "chunk_transformer",
                "args": {"layers": 1, "dim": 32, "heads": 2, "ffn_dim": 64, "ctc_vocab": 39, "dropout": 0.1}},
    "adapter": {"name": "cnn_subsampling", "args": {"hidden_dim": 32}},
    "llm": {"name": "hf_causal_lm", "args": {"model": "random:llama", "device": "cpu", "dtype": "float32",
                                             "prompt_embeddings": 2}, "trainable": False},
    "codec": {"name": "waveform_vq", "args": {"sample_rate": 16000, "strides": [8, 5, 5], "kernels": [16, 11, 11],
                                              "channels": 2, "code_dim": 8, "codebook_size": 16,
                                              "resblock_kernels": [3], "resblock_dilations": [1],
                                              "stft_resolutions": [[256, 64]], "mel_n_fft": 512, "mel_hop": 128,
                                              "n_mels": 40}},
    "speech_decoder": {"name": "nar_ar", "args": {"dim": 16, "heads": 2, "ffn_dim": 32, "layers": 1,
                                                  "prefix_layers": 1, "prenet_layers": 1, "dropout": 0.0,
                                                  "attention_dropout": 0.0}},
}


def tiny_cfg(**extra):
    return OmegaConf.create({"model": TINY_MODEL, **extra})


def tiny_world(root: Path) -> SyntheticSpeechDataset:
    ds = SyntheticSpeechDataset(SyntheticTonesConfig(num_train=4, num_dev=2, max_words=2))
    ds.prepare(root)
    return ds


def batch_of(ds: SyntheticSpeechDataset, root: Path, part: str, needs=("feats",), n: int = 3, wav_rate=16000):
    cuts = ds.cuts(part, root).subset(first=n)
    return SpeechBatchDataset(needs, wav_rate)[cuts]
