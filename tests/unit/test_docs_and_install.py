"""The README, the docs and the install script say what is true (issue 15: items 8 and 10)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = {"docs/catalog.md"}  # written at build time by docs/hooks/catalog.py


def _texts() -> dict[Path, str]:
    files = [ROOT / "README.md", ROOT / "pyproject.toml", *sorted((ROOT / "docs").rglob("*.md")),
             *sorted((ROOT / "scripts").glob("*.sh"))]
    return {f: f.read_text() for f in files if f.is_file()}


def test_every_docs_page_that_is_named_exists():
    missing = {(str(f.relative_to(ROOT)), ref) for f, text in _texts().items()
               for ref in re.findall(r"docs/[\w/.-]+?\.md", text)
               if ref not in GENERATED and not (ROOT / ref).is_file()}
    assert not missing, sorted(missing)


def test_tests_said_to_be_marked_slow_are_marked_slow():
    wrong = [(str(f.relative_to(ROOT)), t) for f, text in _texts().items()
             for t in re.findall(r"`(tests/[\w/]+\.py)` \(marked `slow`\)", text)
             if "mark.slow" not in (ROOT / t).read_text()]
    assert not wrong, wrong


def test_readme_states_disk_network_and_privileges():
    readme = (ROOT / "README.md").read_text()
    two_commands = readme[readme.index("## Two commands"):readme.index("bash scripts/install.sh &&")]
    for needed in ("6 GB", "package index", "root or sudo", "virtual environment"):
        assert needed in two_commands, needed


def test_install_refuses_a_system_managed_python_with_the_commands_that_fix_it(tmp_path):
    """Debian 12's own Python refuses `pip install` (PEP 668): the script stops before apt or pip and says how
    to make a virtual environment. Stand-ins for python, apt-get and sudo make sure nothing is installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_python = bin_dir / "python-managed"
    fake_python.write_text('#!/bin/sh\ncase "$2" in *EXTERNALLY-MANAGED*) echo 1; exit 0;; esac\n'
                           'echo "python called: $*" >&2; exit 3\n')
    for tool in ("apt-get", "sudo"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} called" >&2; exit 3\n')
    for f in bin_dir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k != "PIP_BREAK_SYSTEM_PACKAGES"}
    env |= {"PYTHON": str(fake_python), "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), "--test"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "PEP 668" in proc.stderr and "python3 -m venv .venv && . .venv/bin/activate" in proc.stderr
    assert "bash scripts/install.sh --test" in proc.stderr
    assert "called" not in proc.stderr  # stopped before apt-get and pip
