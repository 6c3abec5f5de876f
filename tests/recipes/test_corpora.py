"""Corpus data sources: a folder of your own recordings (or a CSV) and the LibriSpeech layout through lhotse's
``prepare_librispeech``, each checked before training, and the input stages trained a few steps from each.

The corpora are built on the fly (``_corpora.py``: espeak-ng speech) with bad files among the good ones: a file
that is not audio, an empty transcript, a transcript without its recording, a recording without a transcript,
a 22.05 kHz file among 16 kHz ones.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from _corpora import SENTENCES, folder_corpus, librispeech_corpus, speech
from typer.testing import CliRunner

from omnikit.cli.app import app
from omnikit.config import load_recipe, validate_recipe
from omnikit.data.collate import load_cut_audio
from omnikit.data.corpora import AudioFolderConfig, AudioFolderDataset, LibriSpeechConfig, LibriSpeechDataset
from omnikit.data.corpus_check import DataCheckError

# a few steps of each input stage, validating on the dev cuts before and after
FEW_STEPS = [f"stages.{s}.trainer.{k}" for s in ("input_1_ctc", "input_2_align") for k in (
    "max_steps=3", "val_check_interval=3", "checkpoint_every_n_steps=3", "enable_progress_bar=false")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("recordings")
    return root, folder_corpus(root)


@pytest.fixture(scope="module")
def libri(tmp_path_factory):
    root = tmp_path_factory.mktemp("LibriSpeech")
    return root, librispeech_corpus(root, broken=True)


def _folder(path: Path, **kw) -> AudioFolderDataset:
    return AudioFolderDataset(AudioFolderConfig(path=str(path), **kw))


# ---------------------------------------------------------------------------------------------- the check
def test_folder_check_names_every_bad_file_and_keeps_the_rest(folder, tmp_path, capsys):
    src, bad = folder
    ds = _folder(src)
    ds.prepare(tmp_path)
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["total"] == 14 and report["kept"] == 10 and report["invalid"] == 4
    kinds = {k: " ".join(v) for k, v in report["problems"].items()}
    assert set(kinds) == {"unreadable_audio", "empty_transcript", "missing_audio", "missing_transcript"}
    assert str(bad["corrupt"]) in kinds["unreadable_audio"] and str(bad["empty"]) in kinds["empty_transcript"]
    assert str(bad["orphan"]) in kinds["missing_audio"] and str(bad["lonely"]) in kinds["missing_transcript"]
    for key in ("corrupt", "empty", "orphan", "lonely", "rate"):  # each named on the console too
        assert str(bad[key]) in out, key
    assert "sample rates mixed" in out and report["rates"] == {"16000": 9, "22050": 1}
    cuts = list(ds.cuts("asr_train", tmp_path)) + list(ds.cuts("asr_dev", tmp_path))
    assert len(cuts) == 10 and len(ds.cuts("asr_dev", tmp_path)) >= 1
    kept = {Path(c.recording.sources[0].source).name for c in cuts}
    assert not kept & {"corrupt.wav", "empty.wav", "lonely.wav"}
    texts = {c.supervisions[0].text for c in cuts}
    assert set(SENTENCES[:10]) == texts
    # every kept cut loads at 16 kHz: the 22.05 kHz file resampled, the stereo one averaged to mono
    by_name = {Path(c.recording.sources[0].source).name: c for c in cuts}
    for name in ("wideband.wav", "stereo.wav"):
        audio = load_cut_audio(by_name[name], 16_000)
        assert audio.ndim == 1 and abs(audio.numel() - round(by_name[name].duration * 16_000)) <= 2


def test_fail_policy_stops_before_training_naming_the_files(folder, tmp_path):
    src, bad = folder
    with pytest.raises(DataCheckError) as err:
        _folder(src, on_invalid="fail").prepare(tmp_path)
    msg = str(err.value)
    assert "4 of 14 recordings are invalid" in msg and str(bad["corrupt"]) in msg and str(bad["empty"]) in msg
    assert "check.txt" in msg and not (tmp_path / "asr_train.jsonl.gz").exists()
    assert str(bad["orphan"]) in (tmp_path / "check.txt").read_text()  # the full list


def test_too_much_invalid_stops_even_when_skipping(folder, tmp_path):
    src, _ = folder
    with pytest.raises(DataCheckError, match="max_invalid_fraction"):
        _folder(src, max_invalid_fraction=0.2).prepare(tmp_path)


def test_rate_mix_can_be_a_problem(folder, tmp_path):
    src, bad = folder
    ds = _folder(src, on_rate_mix="skip")
    ds.prepare(tmp_path)
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["kept"] == 9 and str(bad["rate"]) in " ".join(report["problems"]["sample_rate"])
    with pytest.raises(DataCheckError, match="22050 Hz|not at 16000 Hz"):
        _folder(src, on_rate_mix="fail").prepare(tmp_path / "again")


def test_a_truncated_file_is_caught_when_decoding(tmp_path):
    import soundfile as sf

    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        sf.write(src / f"u{i}.flac", speech(SENTENCES[i]), 16_000, format="FLAC")
        (src / f"u{i}.txt").write_text(SENTENCES[i])
    data = (src / "u0.flac").read_bytes()
    (src / "u0.flac").write_bytes(data[: len(data) // 2])  # the header still promises every sample
    _folder(src, audio_check="header").prepare(tmp_path / "header")
    assert json.loads((tmp_path / "header" / "check.json").read_text())["kept"] == 3
    _folder(src).prepare(tmp_path / "decode")  # decode is the default for your own recordings
    report = json.loads((tmp_path / "decode" / "check.json").read_text())
    assert report["kept"] == 2 and str(src / "u0.flac") in report["problems"]["unreadable_audio"][0]


def test_prepare_is_cached_until_the_folder_changes(folder, tmp_path, capsys):
    src, _ = folder
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    ds = _folder(copy)
    ds.prepare(tmp_path / "out")
    manifest = tmp_path / "out" / "asr_train.jsonl.gz"
    stamp = manifest.stat().st_mtime_ns
    capsys.readouterr()
    ds.prepare(tmp_path / "out")
    assert manifest.stat().st_mtime_ns == stamp and "checked already" in capsys.readouterr().out
    for name in ("corrupt.wav", "corrupt.txt"):  # fixed by removing it: checked again
        (copy / "spk1" / name).unlink()
    ds.prepare(tmp_path / "out")
    report = json.loads((tmp_path / "out" / "check.json").read_text())
    assert report["total"] == 13 and report["kept"] == 10 and "unreadable_audio" not in report["problems"]


def test_csv_corpus_with_its_own_split(folder, tmp_path):
    src, bad = folder
    rows = [{"audio": f"spk{1 + i % 2}/utt{i}.wav", "text": SENTENCES[i], "speaker": f"s{i % 2}",
             "split": "dev" if i == 7 else "train"} for i in range(8)]
    rows.append({"audio": "spk2/empty.wav", "text": "", "speaker": "", "split": ""})
    rows.append({"audio": "spk1/nowhere.wav", "text": "gone", "speaker": "", "split": ""})
    table = src / "corpus.csv"
    with table.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["audio", "text", "speaker", "split"])
        w.writeheader()
        w.writerows(rows)
    ds = _folder(table)
    ds.prepare(tmp_path)
    report = json.loads((tmp_path / "check.json").read_text())
    assert report["kept"] == 8 and set(report["problems"]) == {"empty_transcript", "missing_audio"}
    assert f"{table}:10" in report["problems"]["empty_transcript"][0]  # the CSV line is named
    assert str(src / "spk1" / "nowhere.wav") in report["problems"]["missing_audio"][0]
    dev = ds.cuts("asr_dev", tmp_path)
    assert [c.supervisions[0].text for c in dev] == [SENTENCES[7]] and dev[0].supervisions[0].speaker == "s1"


def test_librispeech_layout_through_lhotse(libri, tmp_path, capsys):
    src, bad = libri
    ds = LibriSpeechDataset(LibriSpeechConfig(corpus_dir=str(src)))
    ds.prepare(tmp_path)
    out = capsys.readouterr().out
    for key in ("corrupt", "missing", "empty"):
        assert str(bad[key]) in out, key
    train, dev = ds.cuts("asr_train", tmp_path), ds.cuts("asr_dev", tmp_path)
    assert len(train) == 8 and len(dev) == 3
    cut = train[0]
    assert cut.supervisions[0].text == cut.supervisions[0].text.lower()  # normalize_text: lower
    assert {c.supervisions[0].speaker for c in train} == {"19", "26"}
    # lhotse read a view of the valid files; the cuts point at the corpus's own files
    sources = [Path(c.recording.sources[0].source) for c in train]
    assert all(s.is_file() and not s.is_symlink() and src in s.parents for s in sources)
    assert load_cut_audio(cut, 16_000).numel() > 0


def test_librispeech_names_a_missing_subset(libri, tmp_path):
    src, _ = libri
    with pytest.raises(FileNotFoundError, match="train-clean-360"):
        LibriSpeechDataset(LibriSpeechConfig(corpus_dir=str(src), train=["train-clean-360"])).prepare(tmp_path)


# ---------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", ["corpus_folder.yaml", "corpus_librispeech.yaml"])
def test_the_paper_scale_corpus_recipes_validate_and_name_their_schedule(name):
    cfg = load_recipe(name, ["paths.corpus=/data/corpus"])
    validate_recipe(cfg, source=name)
    assert list(cfg.schedule) == ["input_1_ctc", "input_2_align"] and cfg.model.encoder.args.layers == 24
    assert all(cfg.stages[s].data.source == "corpus" for s in cfg.schedule)


TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "train-on-your-own-data.md"


def _tutorial_recipe(folder: Path, name: str) -> Path:
    """Write the tutorial's ``# <name>`` yaml block into ``folder``: the tests train what the page shows."""
    text = TUTORIAL.read_text()
    start = text.index(f"```yaml\n# {name}\n") + len(f"```yaml\n# {name}\n")
    path = folder / name
    path.write_text(text[start:text.index("```", start)])
    return path


def test_omnikit_run_on_a_folder_corpus_reports_bad_files_and_trains_on_the_rest(folder, tmp_path, monkeypatch):
    src, bad = folder
    monkeypatch.chdir(tmp_path)
    shutil.copytree(src, tmp_path / "my_recordings")  # the folder that the tutorial's my_corpus.yaml names
    _tutorial_recipe(tmp_path, "my_corpus.yaml")
    res = CliRunner().invoke(app, ["run", "my_corpus.yaml", *FEW_STEPS])  # the tutorial's `omnikit run my_corpus.yaml`
    assert res.exit_code == 0, res.output
    assert "10 kept" in res.output and "4 invalid" in res.output
    for key in ("corrupt", "empty", "orphan", "lonely"):
        assert str(tmp_path / "my_recordings" / bad[key].relative_to(src)) in res.output, key
    run_dir = tmp_path / "runs" / "my_corpus"
    for stage in ("input_1_ctc", "input_2_align"):
        done = json.loads((run_dir / "stages" / stage / "done.json").read_text())
        assert done["steps"] == 3 and done["bad_audio_skipped"] == 0 and done["val_loss_end"] is not None
    assert (run_dir / "data" / "corpus" / "check.txt").is_file() and (run_dir / "cmvn.json").is_file()


def test_omnikit_run_stops_when_the_recipe_says_fail(folder, tmp_path, monkeypatch):
    src, bad = folder
    monkeypatch.chdir(tmp_path)
    shutil.copytree(src, tmp_path / "my_recordings")
    _tutorial_recipe(tmp_path, "my_corpus.yaml")
    res = CliRunner().invoke(app, ["run", "my_corpus.yaml", "data.corpus.args.on_invalid=fail", *FEW_STEPS])
    assert res.exit_code == 1 and "DataCheckError" in res.output
    for key in ("corrupt", "empty"):
        assert str(tmp_path / "my_recordings" / bad[key].relative_to(src)) in res.output, key
    assert not (tmp_path / "runs" / "my_corpus" / "stages" / "input_1_ctc").exists()


def test_omnikit_run_on_the_librispeech_layout(libri, tmp_path, monkeypatch):
    src, _ = libri
    monkeypatch.chdir(tmp_path)
    _tutorial_recipe(tmp_path, "my_librispeech.yaml")
    res = CliRunner().invoke(app, ["run", "my_librispeech.yaml", f"paths.corpus={src}", "--stage", "input_1_ctc",
                                   *FEW_STEPS[:4]])
    assert res.exit_code == 0, res.output
    done = json.loads((tmp_path / "runs" / "my_librispeech" / "stages" / "input_1_ctc" / "done.json").read_text())
    assert done["steps"] == 3 and done["val_loss_end"] is not None
