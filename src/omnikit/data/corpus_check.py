"""Checking a speech corpus before training: every recording read, every transcript looked at, one report.

Corpus dataset plugins (``audio_folder``, ``librispeech``) list their recordings as :class:`Entry` objects and
call :func:`check_entries` in ``prepare``. Problems, each naming its file:

* ``missing_audio``: a transcript whose recording is not there;
* ``missing_transcript``: a recording without a transcript;
* ``unreadable_audio``: a recording soundfile cannot open (``audio_check: header``) or decode to the end
  (``decode``: also catches truncated files and NaN samples);
* ``empty_transcript``: a transcript with no text;
* ``too_short`` / ``too_long``: outside ``min_duration`` / ``max_duration``;
* ``sample_rate``: a recording not at ``sample_rate`` (16 kHz). By default a note only: audio is resampled
  when loaded; ``on_rate_mix: skip | fail`` makes it a problem.

``on_invalid: skip`` (default) drops the problem recordings, counts them and names them on the console;
``fail`` stops before training with every problem listed. Either way more than ``max_invalid_fraction`` of the
corpus invalid stops the run (a wrong folder or layout, most likely). The full report is written as
``check.json`` and ``check.txt`` beside the manifests.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from omnikit.registry import param

SHOWN = 20  # problems printed on the console; all of them are in check.txt


class DataCheckError(ValueError):
    """The corpus fails its check (``on_invalid: fail``, or too much of it invalid); the message says why."""


@dataclass
class CheckFields:
    """Data-check options, shared by the corpus dataset plugins (fields of their ``args``)."""

    on_invalid: Literal["skip", "fail"] = param(
        "skip", "skip: train without the invalid recordings (counted, named on the console and in check.txt); "
        "fail: stop before training, listing every problem.")
    max_invalid_fraction: float = param(
        0.5, "Stop even when skipping if more than this share of the recordings is invalid (a wrong folder?).")
    audio_check: Literal["header", "decode"] = param(
        "decode", "header: open every file and read its header; decode: also read all samples (finds truncated "
        "files and NaN samples; slower on big corpora).")
    min_duration: float = param(0.1, "Recordings shorter than this (s) are invalid.")
    max_duration: float | None = param(None, "Recordings longer than this (s) are invalid (None: no limit).")
    sample_rate: int = param(16_000, "The rate omnikit trains at; recordings at another rate are listed.")
    on_rate_mix: Literal["resample", "skip", "fail"] = param(
        "resample", "Recordings not at sample_rate: resample (when loaded; a note in the report), skip them "
        "(invalid), or fail.")
    check_workers: int = param(4, "Threads reading audio during the check.")


@dataclass
class Entry:
    """One recording of a corpus: its id, audio file and transcript (``None``: that half is missing)."""

    id: str
    audio: Path | None
    text: str | None
    speaker: str | None = None
    split: str | None = None
    where: str = ""  # where the transcript came from, for messages (a .txt file, a CSV row)
    sample_rate: int = 0  # filled by the check
    num_samples: int = 0
    channels: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.audio) if self.audio is not None else self.where or self.id


@dataclass
class CheckReport:
    """What :func:`check_entries` found: counts, problems by kind, notes."""

    source: str
    total: int = 0
    kept: int = 0
    problems: dict[str, list[str]] = field(default_factory=dict)  # kind -> "file: detail" lines
    rates: dict[int, int] = field(default_factory=dict)
    other_rate: list[str] = field(default_factory=list)
    hours: float = 0.0

    @property
    def invalid(self) -> int:
        return self.total - self.kept

    def lines(self, shown: int | None = SHOWN) -> list[str]:
        size = f"{self.hours:.1f} h" if self.hours >= 1 else f"{self.hours * 60:.1f} min"
        out = [f"data check of {self.source}: {self.total} recordings, {self.kept} kept ({size}), "
               f"{self.invalid} invalid"]
        listed = [(kind, line) for kind, items in self.problems.items() for line in items]
        for kind, line in listed[:shown] if shown is not None else listed:
            out.append(f"  {kind}: {line}")
        if shown is not None and len(listed) > shown:
            out.append(f"  ... and {len(listed) - shown} more (all of them in check.txt)")
        if self.other_rate:
            rates = ", ".join(f"{n} at {r} Hz" for r, n in sorted(self.rates.items()))
            files = self.other_rate if shown is None else self.other_rate[:5]
            more = "" if shown is None or len(self.other_rate) <= 5 else f" and {len(self.other_rate) - 5} more"
            out.append(f"  note: sample rates mixed ({rates}); resampled when loaded: {', '.join(files)}{more}")
        return out


def _read(entry: Entry, decode: bool) -> None:
    """Fill ``entry``'s audio facts, or append a problem."""
    try:
        info = sf.info(str(entry.audio))
        entry.sample_rate, entry.num_samples, entry.channels = int(info.samplerate), int(info.frames), int(info.channels)
    except Exception as err:  # soundfile raises several types for a broken file
        entry.problems.append(f"unreadable_audio: {entry.audio} ({' '.join(str(err).split())})")
        return
    if entry.num_samples <= 0:
        entry.problems.append(f"unreadable_audio: {entry.audio} (no samples)")
        return
    if decode:
        try:
            wav, _ = sf.read(str(entry.audio), dtype="float32", always_2d=True)
        except Exception as err:
            entry.problems.append(f"unreadable_audio: {entry.audio} ({' '.join(str(err).split())})")
            return
        if wav.shape[0] < entry.num_samples:
            entry.problems.append(f"unreadable_audio: {entry.audio} (truncated: the header says "
                                  f"{entry.num_samples} samples, the file holds {wav.shape[0]})")
        elif not np.isfinite(wav).all():
            entry.problems.append(f"unreadable_audio: {entry.audio} (NaN or infinite samples)")


def check_entries(entries: list[Entry], cfg: CheckFields, source: str) -> tuple[list[Entry], CheckReport]:
    """Check every entry; returns the valid ones (in order) and the report. Raises :class:`DataCheckError` when
    the policy says stop (after printing nothing: the caller prints the report)."""
    report = CheckReport(source=source, total=len(entries))
    readable = [e for e in entries if e.audio is not None and e.audio.is_file()]
    for e in entries:
        if e.audio is None:
            e.problems.append(f"missing_audio: {e.where} (a transcript without its recording)")
        elif not e.audio.is_file():
            e.problems.append(f"missing_audio: {e.audio} (named by {e.where})")
    with ThreadPoolExecutor(max(1, cfg.check_workers)) as pool:
        list(pool.map(lambda e: _read(e, cfg.audio_check == "decode"), readable))
    for e in entries:
        if e.text is None:
            e.problems.append(f"missing_transcript: {e.name} (no {e.where})" if e.where else
                              f"missing_transcript: {e.name}")
        elif not e.text.strip():
            e.problems.append(f"empty_transcript: {e.name} ({e.where or 'no text'})")
        if e.problems or not e.sample_rate:
            continue
        seconds = e.num_samples / e.sample_rate
        if seconds < cfg.min_duration:
            e.problems.append(f"too_short: {e.audio} ({seconds:.3f} s < min_duration {cfg.min_duration} s)")
        elif cfg.max_duration is not None and seconds > cfg.max_duration:
            e.problems.append(f"too_long: {e.audio} ({seconds:.1f} s > max_duration {cfg.max_duration} s)")
        if e.sample_rate != cfg.sample_rate and cfg.on_rate_mix == "skip":
            e.problems.append(f"sample_rate: {e.audio} ({e.sample_rate} Hz, not {cfg.sample_rate} Hz)")
    kept = [e for e in entries if not e.problems]
    for e in entries:
        for p in e.problems:
            kind, _, line = p.partition(": ")
            report.problems.setdefault(kind, []).append(line)
    report.kept = len(kept)
    report.rates = dict(sorted(Counter(e.sample_rate for e in kept).items()))
    report.other_rate = [str(e.audio) for e in kept if e.sample_rate != cfg.sample_rate]
    report.hours = round(sum(e.num_samples / e.sample_rate for e in kept) / 3600, 4)
    return kept, report


def write_report(report: CheckReport, root: Path) -> None:
    """``check.json`` (counts, every problem by kind) and ``check.txt`` (the console lines, unabridged)."""
    root.mkdir(parents=True, exist_ok=True)
    data = asdict(report)
    data["invalid"] = report.invalid
    (root / "check.json").write_text(json.dumps(data, indent=1) + "\n")
    (root / "check.txt").write_text("\n".join(report.lines(shown=None)) + "\n")


def enforce(report: CheckReport, cfg: CheckFields, root: Path) -> None:
    """Print the report; raise :class:`DataCheckError` when the policy says stop."""
    for line in report.lines():
        print(f"[omnikit] {line}")
    print(f"[omnikit] data check report: {root / 'check.txt'}")
    first = [f"{k}: {v[0]}" for k, v in report.problems.items()]
    if report.total == 0:
        raise DataCheckError(f"{report.source}: no recordings found (see the layout in docs/data/corpora.md)")
    if report.kept == 0:
        raise DataCheckError(f"{report.source}: every recording is invalid ({'; '.join(first)}); "
                             f"report: {root / 'check.txt'}")
    if report.invalid and cfg.on_invalid == "fail":
        raise DataCheckError(f"{report.source}: {report.invalid} of {report.total} recordings are invalid "
                             f"(on_invalid: fail): {'; '.join(first)}; all of them: {root / 'check.txt'}")
    if report.other_rate and cfg.on_rate_mix == "fail":
        raise DataCheckError(f"{report.source}: {len(report.other_rate)} recordings are not at {cfg.sample_rate} Hz "
                             f"(on_rate_mix: fail), e.g. {report.other_rate[0]}; all of them: {root / 'check.txt'}")
    share = report.invalid / report.total
    if share > cfg.max_invalid_fraction:
        raise DataCheckError(f"{report.source}: {report.invalid} of {report.total} recordings are invalid "
                             f"({share:.0%} > max_invalid_fraction {cfg.max_invalid_fraction:.0%}): "
                             f"{'; '.join(first)}; all of them: {root / 'check.txt'}")


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by ``key`` alone (for dev splits that do not move when files are added)."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2**64


def listing_digest(paths: list[Path]) -> str:
    """A digest of files' names, sizes and modification times: a changed corpus is checked again."""
    h = hashlib.sha1()
    for p in sorted(paths):
        try:
            st = p.stat()
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()
