"""Registry behaviour on fake entry points: listing, lazy import, duplicates, broken plugins, autoload switch."""

from __future__ import annotations

import sys

import pytest

from omnikit.registry import (
    AUTOLOAD_ENV,
    DuplicatePluginError,
    PluginContractError,
    PluginImportError,
    RegistryError,
    UnknownComponentError,
    get_registry,
)


def test_names_read_metadata_without_importing(fake_plugins):
    assert fake_plugins.module not in sys.modules
    assert get_registry("encoder").names() == ["fake_encoder"]
    assert fake_plugins.module not in sys.modules  # listing names imports nothing
    cls = get_registry("encoder").get("fake_encoder")
    assert fake_plugins.module in sys.modules
    assert cls.__name__ == "FakeEncoder"


def test_build_passes_config_and_context(fake_plugins):
    enc = get_registry("encoder").build("fake_encoder", {"layers": 3, "vocab": 10}, input_dim=40)
    assert enc.config.layers == 3 and enc.config.vocab == 10 and enc.input_dim == 40


def test_unknown_name_suggests_near_miss(fake_plugins):
    with pytest.raises(UnknownComponentError, match="did you mean 'fake_encoder'"):
        get_registry("encoder").get("fake_encodr")


def test_duplicate_name_from_two_distributions_names_both(fake_plugins):
    fake_plugins("omnikit.encoders", "fake_encoder", f"{fake_plugins.module}:FakeAdapter", dist="other-pkg")
    with pytest.raises(DuplicatePluginError) as err:
        get_registry("encoder")
    assert "omnikit 0.1.0" in str(err.value) and "other-pkg 2.0" in str(err.value)


def test_broken_plugin_is_listed_and_fails_only_when_used(fake_plugins):
    fake_plugins("omnikit.encoders", "broken", "omnikit_no_such_module_xyz:Thing", dist="broken-pkg")
    reg = get_registry("encoder")
    assert "broken" in reg.names()
    assert reg.get("fake_encoder")  # the healthy one still works
    with pytest.raises(PluginImportError) as err:
        reg.get("broken")
    msg = str(err.value)
    assert "broken-pkg" in msg and "ModuleNotFoundError" in msg


def test_autoload_switch_hides_third_party(fake_plugins, monkeypatch):
    fake_plugins("omnikit.adapters", "extra", f"{fake_plugins.module}:FakeAdapter", dist="thirdparty")
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    reg = get_registry("adapter")
    assert reg.names() == ["fake_adapter"]
    assert [e.name for e in reg.skipped] == ["extra"]


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown plugin kind"):
        get_registry("vocoder")


HALF_CODEC = '''
from dataclasses import dataclass


@dataclass
class HalfCodecConfig:
    rate: int = 8000


class HalfCodec:
    """A codec that forgot half its contract."""

    config_class = HalfCodecConfig
    streaming_decoder = None  # an attribute where a method belongs

    def __init__(self, config):
        self.sample_rate, self.frame_rate = config.rate, 100.0

    def encode(self, wav):
        return wav
'''


def test_build_refuses_a_component_missing_contract_members(fake_plugins):
    (fake_plugins.dir / "acme_half_codec.py").write_text(HALF_CODEC)
    fake_plugins("omnikit.codecs", "half", "acme_half_codec:HalfCodec", dist="acme-codecs", version="0.3")
    with pytest.raises(PluginContractError) as err:
        get_registry("codec").build("half", {"rate": 16000})
    msg = str(err.value)
    assert msg.startswith("codec 'half' from distribution 'acme-codecs 0.3' (acme_half_codec:HalfCodec)")
    assert "omnikit.interfaces.Codec" in msg
    assert "missing codebook_size, decode, streaming_decoder (not callable)" in msg
    assert "encode" not in msg.split("missing", 1)[1] and "reconstruction_loss" not in msg  # optional hook
    assert isinstance(err.value, RegistryError)
    sys.modules.pop("acme_half_codec", None)


def test_build_refuses_an_optional_hook_that_is_not_callable(fake_plugins):
    (fake_plugins.dir / "acme_bad_hook.py").write_text(
        HALF_CODEC.replace("streaming_decoder = None", "fit_from_data = 3\n    codebook_size = 4\n"
                           "    decode = streaming_decoder = staticmethod(lambda *a, **k: None)"))
    fake_plugins("omnikit.codecs", "hooked", "acme_bad_hook:HalfCodec", dist="acme-codecs")
    with pytest.raises(PluginContractError, match=r"missing fit_from_data \(not callable\)$"):
        get_registry("codec").build("hooked")
    sys.modules.pop("acme_bad_hook", None)


def test_fake_components_meet_their_contracts(fake_plugins):
    """The shared fakes are conforming components (other tests build them through the registry)."""
    assert get_registry("adapter").build("fake_adapter", {}, in_dim=4, out_dim=4)
