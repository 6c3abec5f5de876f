"""Shared fixtures: fake plugin distributions, so registry tests do not depend on installed components."""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from omnikit.registry import catalog


@dataclass
class FakeDist:
    name: str
    version: str = "1.0"

    @property
    def metadata(self) -> dict[str, str]:
        return {"Name": self.name}


@dataclass
class FakeEntryPoint:
    name: str
    value: str
    dist: FakeDist


FAKE_MODULE = '''
from dataclasses import dataclass
from typing import Literal
from omnikit.registry import param


@dataclass
class EncCfg:
    vocab: int = param(doc="CTC vocabulary size (required).")
    layers: int = param(2, "Number of blocks.")
    dim: int = param(8, "Width.")
    activation: Literal["relu", "gelu"] = param("relu", "Activation.")


class FakeEncoder:
    """A fake encoder for registry tests."""

    config_class = EncCfg

    def __init__(self, config, input_dim=80):
        self.config, self.input_dim = config, input_dim
        self.output_dim, self.ctc_vocab_size = config.dim, config.vocab

    def forward(self, feats, lens):
        raise NotImplementedError

    def init_state(self):
        return None

    def forward_chunk(self, feats, state):
        raise NotImplementedError


@dataclass
class AdaCfg:
    kernel_size: int = param(5, "Kernel.")


class FakeAdapter:
    """A fake adapter."""

    config_class = AdaCfg

    def __init__(self, config, in_dim=0, out_dim=0):
        self.config = config

    def forward(self, x, lens):
        raise NotImplementedError

    def init_state(self):
        return None

    def forward_chunk(self, x, state):
        raise NotImplementedError
'''


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install fake entry points for all kinds; returns a function to add more before first use."""
    mod_name = f"omnikit_fake_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{mod_name}.py").write_text(textwrap.dedent(FAKE_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    eps: dict[str, list[FakeEntryPoint]] = {g: [] for g in catalog.KINDS.values()}
    own = FakeDist("omnikit", "0.1.0")
    eps["omnikit.encoders"].append(FakeEntryPoint("fake_encoder", f"{mod_name}:FakeEncoder", own))
    eps["omnikit.adapters"].append(FakeEntryPoint("fake_adapter", f"{mod_name}:FakeAdapter", own))

    def source(group: str):
        return list(eps[group])

    def add(group: str, name: str, value: str, dist: str = "thirdparty", version: str = "2.0") -> None:
        eps[group].append(FakeEntryPoint(name, value, FakeDist(dist, version)))

    monkeypatch.setattr(catalog, "_source", source)
    catalog.reset_registries()
    add.module = mod_name  # type: ignore[attr-defined]
    add.dir = tmp_path  # type: ignore[attr-defined]
    yield add
    catalog.reset_registries()
    sys.modules.pop(mod_name, None)

