"""Speech corpora as data sources: your own recordings (``audio_folder``) and LibriSpeech (``librispeech``).

Both give the parts ``asr_train`` and ``asr_dev`` (LibriSpeech also ``asr_test`` when ``test`` names subsets):
lhotse cuts of 16 kHz-or-other audio with ``supervisions[0].text``, the input stages' data. ``prepare(root)``
lists the corpus, checks every recording (:mod:`omnikit.data.corpus_check`: missing or unreadable audio, empty
transcripts, durations, sample rates; a report naming each file), and writes ``<part>.jsonl.gz`` with
absolute audio paths, ``check.json``/``check.txt`` and ``prepared.json`` under ``root``. A second call with the
same arguments and unchanged files returns at once; a changed file list, size or modification time checks the
corpus again.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from lhotse import AudioSource, CutSet, Recording, RecordingSet, SupervisionSegment

from omnikit.data.corpus_check import (
    CheckFields,
    CheckReport,
    Entry,
    check_entries,
    enforce,
    listing_digest,
    stable_fraction,
    write_report,
)
from omnikit.registry import param

FORMAT = 1


def _first_process() -> bool:
    """Whether this is the first process of a run (the ranks of a distributed run all prepare their data)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def _cut(e: Entry, custom: dict[str, Any]) -> Any:
    rec = Recording(id=e.id, sources=[AudioSource(type="file", channels=list(range(e.channels)), source=str(e.audio))],
                    sampling_rate=e.sample_rate, num_samples=e.num_samples, duration=e.num_samples / e.sample_rate)
    cut = rec.to_cut()
    channel: Any = 0 if e.channels == 1 else list(range(e.channels))
    cut.supervisions = [SupervisionSegment(id=e.id, recording_id=e.id, start=0.0, duration=rec.duration,
                                           channel=channel, text=" ".join(str(e.text).split()), speaker=e.speaker)]
    cut.custom = dict(custom)
    return cut


class _Prepared:
    """The ``prepared.json`` stamp: the arguments and the corpus listing a preparation was made from."""

    def __init__(self, root: Path, fingerprint: str):
        self.path, self.fingerprint = Path(root) / "prepared.json", fingerprint

    def done(self) -> dict[str, Any] | None:
        try:
            info = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return info if info.get("fingerprint") == self.fingerprint else None

    def write(self, info: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint, **info}, indent=1) + "\n")
        tmp.replace(self.path)


def _fingerprint(config: Any, files: list[Path]) -> str:
    import hashlib

    blob = json.dumps({"format": FORMAT, "config": asdict(config), "files": listing_digest(files)}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _say_cached(info: dict[str, Any], root: Path) -> None:
    if _first_process():
        check = info.get("check", {})
        print(f"[omnikit] data: {check.get('source', root)} checked already: {check.get('kept')} kept, "
              f"{check.get('invalid')} invalid (report: {root / 'check.txt'})")


def _write_parts(root: Path, parts: dict[str, list[Any]]) -> dict[str, int]:
    for part, cuts in parts.items():
        CutSet.from_cuts(cuts).to_file(root / f"{part}.jsonl.gz")
    return {part: len(cuts) for part, cuts in parts.items()}


def _split_train_dev(entries: list[Entry], dev_fraction: float) -> tuple[list[Entry], list[Entry]]:
    """A ``split`` given with the entry wins; else a stable hash of its id. Both halves are kept non-empty when
    there are two entries or more and ``dev_fraction`` > 0."""
    train, dev, free = [], [], []
    for e in entries:
        if e.split in ("train", "dev"):
            (train if e.split == "train" else dev).append(e)
        else:
            free.append(e)
    for e in free:
        (dev if stable_fraction(e.id) < dev_fraction else train).append(e)
    if dev_fraction > 0 and len(entries) >= 2:
        ranked = sorted(free, key=lambda e: stable_fraction(e.id))
        if not dev and ranked:
            dev.append(ranked[0])
            train.remove(ranked[0])
        if not train and ranked:
            train.append(ranked[-1])
            dev.remove(ranked[-1])
    return train, dev


# ---------------------------------------------------------------------------------------------- audio_folder
@dataclass
class _FolderFields:
    path: str = param(
        doc="A folder of recordings, searched recursively: every <name>.wav (or another of `extensions`) with its "
        "transcript in <name>.txt beside it (UTF-8). Or a CSV file with a header row naming the columns `audio` "
        "(a path, relative to the CSV's folder) and `text`, optionally `speaker` and `split` (train or dev).")
    dev_fraction: float = param(
        0.1, "Share of the recordings in asr_dev, chosen by a stable hash of each file's name (a CSV `split` "
        "column wins).")
    extensions: list[str] = param(factory=lambda: [".wav", ".flac", ".ogg"], doc="Audio file name endings.")


@dataclass
class AudioFolderConfig(CheckFields, _FolderFields):
    """``audio_folder`` args: where the recordings are, then the check's options."""


class AudioFolderDataset:
    """Your own recordings (audio + .txt pairs in a folder, or a CSV) as asr_train/asr_dev, checked first.

    See ``omnikit.data.corpus_check`` for the check and the report, and ``docs/data/corpora.md`` for layouts.
    """

    config_class = AudioFolderConfig
    parts = ["asr_train", "asr_dev"]

    def __init__(self, config: AudioFolderConfig, **_: object):
        self.config = config

    @property
    def source(self) -> Path:
        return Path(self.config.path).expanduser().resolve()

    def _listing(self) -> tuple[list[Entry], list[Path]]:
        """The entries, and every file they were read from (for the stamp)."""
        folder = self.source
        if folder.is_file() and folder.suffix.lower() == ".csv":
            return self._from_csv(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"audio_folder: {folder} is neither a folder nor a .csv file")
        exts = {x.lower() if x.startswith(".") else f".{x.lower()}" for x in self.config.extensions}
        audio = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts)
        texts = sorted(folder.rglob("*.txt"))
        entries, ids, stems = [], set(), set()
        for p in audio:
            rel = p.relative_to(folder)
            uid = rel.with_suffix("").as_posix()
            uid = uid if uid not in ids else rel.as_posix()
            ids.add(uid)
            txt = p.with_suffix(".txt")
            stems.add(txt)
            text = txt.read_text(encoding="utf-8", errors="replace") if txt.is_file() else None
            entries.append(Entry(id=uid, audio=p, text=text, speaker=rel.parts[0] if len(rel.parts) > 1 else None,
                                 where=str(txt)))
        for t in texts:
            if t not in stems:  # a transcript whose recording is not there
                entries.append(Entry(id=t.relative_to(folder).with_suffix("").as_posix(), audio=None,
                                     text=t.read_text(encoding="utf-8", errors="replace"), where=str(t)))
        return entries, audio + texts

    @staticmethod
    def _from_csv(path: Path) -> tuple[list[Entry], list[Path]]:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if rows and not {"audio", "text"} <= set(rows[0]):
            raise ValueError(f"{path}: the header must name the columns `audio` and `text` "
                             f"(it has: {', '.join(rows[0])})")
        entries, files = [], [path]
        for i, row in enumerate(rows, start=2):  # line numbers as an editor shows them (the header is line 1)
            name = (row.get("audio") or "").strip()
            audio = (path.parent / name).resolve() if name else None
            split = (row.get("split") or "").strip().lower() or None
            if split not in (None, "train", "dev"):
                split = None
            entries.append(Entry(id=Path(name).with_suffix("").as_posix() if name else f"row{i}", audio=audio,
                                 text=row.get("text") or "", speaker=(row.get("speaker") or "").strip() or None,
                                 split=split, where=f"{path}:{i}"))
            if audio is not None:
                files.append(audio)
        return entries, files

    def prepare(self, root: Path) -> None:
        root = Path(root)
        entries, files = self._listing()
        stamp = _Prepared(root, _fingerprint(self.config, files))
        if (info := stamp.done()) is not None:
            _say_cached(info, root)
            return
        kept, report = check_entries(entries, self.config, f"audio_folder {self.source}")
        write_report(report, root)
        enforce(report, self.config, root)
        train, dev = _split_train_dev(kept, self.config.dev_fraction)
        custom = {"source": "audio_folder"}
        counts = _write_parts(root, {"asr_train": [_cut(e, custom) for e in train],
                                     "asr_dev": [_cut(e, custom) for e in dev]})
        stamp.write({"counts": counts, "check": _summary(report)})

    def cuts(self, part: str, root: Path) -> CutSet:
        return _read_part(self, part, root)


def _summary(report: CheckReport) -> dict[str, Any]:
    return {"source": report.source, "total": report.total, "kept": report.kept, "invalid": report.invalid,
            "hours": report.hours, "problems": {k: len(v) for k, v in report.problems.items()}}


def _read_part(ds: Any, part: str, root: Path) -> CutSet:
    if part not in ds.parts:
        raise ValueError(f"{type(ds).__name__} has no part '{part}'; parts: {', '.join(ds.parts)}")
    path = Path(root) / f"{part}.jsonl.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: prepare({root}) first")
    return CutSet.from_file(path)


# ---------------------------------------------------------------------------------------------- librispeech
@dataclass
class _LibriSpeechFields:
    corpus_dir: str = param(
        doc="The LibriSpeech folder, holding subsets such as train-clean-100/ and dev-clean/ "
        "(<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac and <speaker>-<chapter>.trans.txt).")
    train: list[str] = param(factory=lambda: ["train-clean-100"], doc="Subsets in asr_train.")
    dev: list[str] = param(factory=lambda: ["dev-clean"], doc="Subsets in asr_dev.")
    test: list[str] = param(factory=list, doc="Subsets in asr_test (e.g. test-clean); none by default.")
    normalize_text: Literal["none", "lower"] = param(
        "lower", "lhotse's text normalisation: lower turns the upper-case transcripts into lower case.")
    num_jobs: int = param(4, "Threads of lhotse's prepare_librispeech.")


@dataclass
class LibriSpeechConfig(CheckFields, _LibriSpeechFields):
    """``librispeech`` args: the corpus and its subsets, then the check's options."""

    audio_check: Literal["header", "decode"] = param(
        "header", "header: open every file and read its header (fast on 1,000 hours); decode: read all samples.")


class LibriSpeechDataset:
    """LibriSpeech (or Mini LibriSpeech) from a local folder, through lhotse's own ``prepare_librispeech``.

    The recordings are checked first; when some are invalid and ``on_invalid: skip``, lhotse prepares a view of
    the corpus that holds only the valid ones (links, under ``root/view``), and the cuts point at the original
    files. Nothing is downloaded.
    """

    config_class = LibriSpeechConfig

    def __init__(self, config: LibriSpeechConfig, **_: object):
        self.config = config
        self.parts = ["asr_train", "asr_dev"] + (["asr_test"] if config.test else [])

    @property
    def corpus(self) -> Path:
        return Path(self.config.corpus_dir).expanduser().resolve()

    def _subsets(self) -> dict[str, list[str]]:
        return {"asr_train": list(self.config.train), "asr_dev": list(self.config.dev),
                "asr_test": list(self.config.test)}

    def _listing(self, subset: str) -> tuple[list[Entry], list[Path]]:
        base = self.corpus / subset
        if not base.is_dir():
            raise FileNotFoundError(f"librispeech: no subset folder {base} (subsets there: "
                                    f"{', '.join(sorted(p.name for p in self.corpus.iterdir() if p.is_dir()))})")
        entries, named, files = [], set(), []
        for trans in sorted(base.rglob("*.trans.txt")):
            files.append(trans)
            for n, line in enumerate(trans.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
                if not line.strip():
                    continue
                uid, _, text = line.strip().partition(" ")
                audio = trans.parent / f"{uid}.flac"
                named.add(audio)
                entries.append(Entry(id=uid, audio=audio, text=text, speaker=uid.split("-")[0],
                                     where=f"{trans}:{n}"))
        for flac in sorted(base.rglob("*.flac")):
            files.append(flac)
            if flac not in named:
                entries.append(Entry(id=flac.stem, audio=flac, text=None,
                                     where=f"line for {flac.stem} in {flac.parent}/*.trans.txt"))
        return entries, files

    def prepare(self, root: Path) -> None:
        root = Path(root)
        if not self.corpus.is_dir():
            raise FileNotFoundError(f"librispeech: no folder {self.corpus}")
        subsets = sorted({s for group in self._subsets().values() for s in group})
        listed = {s: self._listing(s) for s in subsets}
        files = [f for _, fs in listed.values() for f in fs]
        stamp = _Prepared(root, _fingerprint(self.config, files))
        if (info := stamp.done()) is not None:
            _say_cached(info, root)
            return
        entries = [e for es, _ in listed.values() for e in es]
        kept, report = check_entries(entries, self.config, f"librispeech {self.corpus}")
        write_report(report, root)
        enforce(report, self.config, root)
        manifests = self._lhotse(root, subsets, kept, all_valid=len(kept) == len(entries))
        cuts = {}
        for part, group in self._subsets().items():
            if part in self.parts:
                cuts[part] = [c for s in group for c in manifests[s]]
        stamp.write({"counts": _write_parts(root, cuts), "check": _summary(report)})

    def _lhotse(self, root: Path, subsets: list[str], kept: list[Entry], all_valid: bool) -> dict[str, list]:
        """lhotse's ``prepare_librispeech`` on the corpus, or on a view of its valid recordings."""
        from lhotse.recipes import prepare_librispeech

        out = root / "lhotse"
        shutil.rmtree(out, ignore_errors=True)  # lhotse reuses manifests it finds there
        corpus = self.corpus
        if not all_valid:
            corpus = self._view(root / "view", kept)
        prepared = prepare_librispeech(corpus, dataset_parts=subsets, output_dir=out,
                                       normalize_text=self.config.normalize_text, num_jobs=self.config.num_jobs)
        result = {}
        for subset in subsets:
            recs, sups = prepared[subset]["recordings"], prepared[subset]["supervisions"]
            if not all_valid:  # point at the corpus's own files, not at the view's links
                recs = RecordingSet.from_recordings(_with_source(r, os.path.realpath(r.sources[0].source))
                                                    for r in recs)
            result[subset] = [c.with_custom("source", "librispeech") for c in
                              CutSet.from_manifests(recordings=recs, supervisions=sups)]
        return result

    def _view(self, view: Path, kept: list[Entry]) -> Path:
        """``view/<subset>/<spk>/<chapter>/``: links to the valid recordings and their transcript lines only."""
        shutil.rmtree(view, ignore_errors=True)
        lines: dict[Path, list[str]] = {}
        for e in kept:
            assert e.audio is not None
            rel = e.audio.relative_to(self.corpus)
            target = view / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(e.audio)
            spk, chapter = e.id.split("-")[:2]
            lines.setdefault(target.parent / f"{spk}-{chapter}.trans.txt", []).append(f"{e.id} {e.text}")
        for path, rows in lines.items():
            path.write_text("\n".join(rows) + "\n")
        return view

    def cuts(self, part: str, root: Path) -> CutSet:
        return _read_part(self, part, root)


def _with_source(rec: Recording, path: str) -> Recording:
    from lhotse.utils import fastcopy

    return fastcopy(rec, sources=[fastcopy(rec.sources[0], source=path)])
