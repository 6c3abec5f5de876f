"""``lhotse_manifest``: read existing lhotse CutSet manifests, one file (or several) per part."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lhotse import CutSet

from omnikit.registry import param


@dataclass
class LhotseManifestConfig:
    parts: dict[str, list[str]] = param(
        doc="Part name -> CutSet manifest files (jsonl/jsonl.gz), e.g. {asr_train: [a.jsonl.gz, b.jsonl.gz]}. "
        "Relative paths are taken from `root` (the data source's folder)."
    )


class LhotseManifestDataset:
    """Reads lhotse CutSet manifests (user audio + supervisions + custom fields) for the stages.

    Cuts follow the omnikit data contract: 16 kHz user audio with ``supervisions[0].text``; dialogue cuts
    carry ``custom["answer"]``, duplex cuts ``custom["state_labels"]`` (one int per 160 ms chunk), TTS cuts
    assistant-voice audio with its text. ``prepare`` only checks that the files exist; several files of one
    part are concatenated lazily.
    """

    config_class = LhotseManifestConfig

    def __init__(self, config: LhotseManifestConfig, **_: object):
        self.config = config
        self.parts = list(config.parts)

    def _files(self, part: str, root: Path) -> list[Path]:
        if part not in self.config.parts:
            raise ValueError(f"lhotse_manifest has no part '{part}'; parts: {', '.join(self.parts)}")
        files = self.config.parts[part]
        files = [files] if isinstance(files, str) else list(files)
        return [p if p.is_absolute() else Path(root) / p for p in map(Path, files)]

    def prepare(self, root: Path) -> None:
        missing = [str(f) for part in self.parts for f in self._files(part, root) if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"lhotse_manifest: manifest file(s) not found: {', '.join(missing)}")

    def cuts(self, part: str, root: Path) -> CutSet:
        files = self._files(part, root)
        if len(files) == 1:
            return CutSet.from_file(files[0])
        return CutSet.from_files(files)
