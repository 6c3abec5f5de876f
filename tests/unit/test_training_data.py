"""Synthetic tone world, batches from cuts, bad audio handling, augmentation."""

from __future__ import annotations

import pytest
import torch
from _training_fixtures import tiny_world

from omnikit.data.augment import AugmentConfig, Augmenter
from omnikit.data.collate import BadAudioError, SpeechBatchDataset
from omnikit.data.synthetic import IGNORE, RESPOND, UNLABELLED, state_labels


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return tiny_world(root), root


def test_world_has_every_part_and_contract_fields(world):
    ds, root = world
    for part in ds.parts:
        assert len(ds.cuts(part, root)) in (2, 4)
    dialogue = ds.cuts("dialogue_train", root)[0]
    assert dialogue.custom["answer"] == " ".join(reversed(dialogue.supervisions[0].text.split()))
    for cut in ds.cuts("duplex_train", root):
        labels = cut.custom["state_labels"]
        assert len(labels) == -(-cut.num_samples // 2560)
        assert labels.count(RESPOND) + labels.count(IGNORE) == 1
        assert (labels.count(IGNORE) == 1) == ("answer" not in cut.custom)


def test_prepare_is_idempotent(world):
    ds, root = world
    manifest = root / "asr_train.jsonl.gz"
    before = manifest.stat().st_mtime_ns
    ds.prepare(root)
    assert manifest.stat().st_mtime_ns == before


def test_state_labels_mark_the_first_chunk_after_speech():
    assert state_labels(2560 * 4, speech_end=2560 * 2 - 10) == [0, 0, RESPOND, UNLABELLED]


def test_batches_pad_features_audio_and_labels(world):
    ds, root = world
    cuts = ds.cuts("duplex_train", root)
    batch = SpeechBatchDataset({"feats", "wav"}, wav_rate=24000)[cuts]
    assert batch["feats"].shape[0] == len(cuts) and batch["feats"].shape[2] == 80
    assert batch["feat_lens"].max() == batch["feats"].shape[1] and torch.all(batch["feat_lens"] % 16 == 0)
    n24 = [round(c.duration * 24000) for c in cuts]
    assert batch["wav_lens"].tolist() == pytest.approx(n24, abs=2)
    assert batch["state_labels"].shape[0] == len(cuts) and (batch["state_labels"] == -100).any()


def test_bad_audio_names_the_file_or_is_skipped_and_counted(world, tmp_path):
    ds, root = world
    cuts = list(ds.cuts("asr_train", root))
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wav")
    from lhotse import AudioSource, CutSet
    from lhotse.utils import fastcopy

    def pointing_to(cut, path):
        source = AudioSource(type="file", channels=[0], source=str(path))
        return fastcopy(cut, recording=fastcopy(cut.recording, sources=[source]))

    cuts[1] = pointing_to(cuts[1], bad)
    cuts[2] = pointing_to(cuts[2], tmp_path / "missing.wav")
    cutset = CutSet.from_cuts(cuts)
    with pytest.raises(BadAudioError, match="broken.wav"):
        SpeechBatchDataset({"feats"})[cutset]
    batch = SpeechBatchDataset({"feats"}, on_bad_audio="skip")[cutset]
    assert batch["n_bad"] == 2 and len(batch["cut_ids"]) == len(cuts) - 2


def test_spec_augment_masks_and_speed_changes_length():
    aug = Augmenter(AugmentConfig(time_masks=2, time_mask_width=5, freq_masks=1, freq_mask_width=8, speed=[1.1]),
                    seed=0)
    feats = torch.randn(100, 80)
    masked = aug.spec(feats)
    assert (masked != feats).any() and masked.shape == feats.shape
    assert aug.waveform(torch.randn(16000)).shape[0] < 16000
    with pytest.raises(ValueError, match="unknown keys"):
        AugmentConfig.from_mapping({"spec": 1})
