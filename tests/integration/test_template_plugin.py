"""Installing plugins/omnikit-plugin-template adds its component to omnikit with no change to omnikit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins" / "omnikit-plugin-template"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The template installed (as a real distribution with its entry points) into a private folder."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PLUGIN)],
        check=True, capture_output=True, text=True,
    )
    return target


def omnikit(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("OMNIKIT_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run([sys.executable, "-m", "omnikit.cli.app", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_listed_with_provider(plugin_site):
    res = omnikit(plugin_site, "ls", "vad")
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if "noise_floor" in ln)
    assert "omnikit-plugin-template 0.1.0" in line and "adaptive noise floor" in line
    res = omnikit(plugin_site, "plugins")
    assert "omnikit-plugin-template" in res.stdout


def test_usable_from_a_recipe(plugin_site, tmp_path):
    recipe = tmp_path / "vad.yaml"
    recipe.write_text("omnikit: 1\nname: vad\nmodel:\n  vad: {name: noise_floor, args: {margin_db: 8.0}}\n")
    assert omnikit(plugin_site, "validate", str(recipe)).returncode == 0
    recipe.write_text("omnikit: 1\nname: vad\nmodel:\n  vad: {name: noise_floor, args: {margin: 8.0}}\n")
    res = omnikit(plugin_site, "validate", str(recipe))
    assert res.returncode == 2 and "did you mean 'margin_db'" in res.stderr
    code = ("from omnikit.registry import get_registry; "
            "v = get_registry('vad').build('noise_floor', {'window': 256}); "
            "import torch; p, s = v.speech_prob(torch.zeros(256), v.init_state()); print(v.window, p < 0.5)")
    env = {**os.environ, "PYTHONPATH": str(plugin_site)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["256", "True"]


def test_disabled_by_autoload_switch(plugin_site):
    env = {**os.environ, "PYTHONPATH": str(plugin_site), "OMNIKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    res = subprocess.run([sys.executable, "-m", "omnikit.cli.app", "ls", "vad"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert "noise_floor" not in res.stdout


def test_plugin_own_tests_pass(plugin_site):
    env = {**os.environ, "PYTHONPATH": str(plugin_site)}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests")],
                         env=env, capture_output=True, text=True, cwd=PLUGIN, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
