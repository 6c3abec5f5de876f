"""The tutorials (docs/tutorials/) are true: every shell command they show is run or validated here, in page
order, in one scratch folder per page.

* ``omnikit ls | show | cp | validate | config`` run for real (typer's CliRunner) and must exit 0.
* ``omnikit run`` is validated, not trained: its options parse, the recipe with the overrides it names passes
  ``validate_recipe``, ``--stage`` is in the schedule, and the run directory is checked and given its
  ``recipe.yaml`` as the CLI does before training, so later commands can name it.
* ``omnikit chat | eval | serve`` (GPU-only in the tutorials) are validated: their options parse and their run
  directory is one that an earlier ``omnikit run`` on the page trains into.
* A ```` ```text ```` block that starts with ``$ omnikit ...`` is run for real (a dry run too: it is cheap at
  smoke size) and each ``...``-separated chunk of the lines under it must appear, contiguous, in the output.
* A ```` ```yaml ```` block whose first line is ``# FILE`` is written as FILE; ``# FILE, under model:`` replaces
  those entries under ``model:`` in FILE; any other yaml block must be an excerpt of a file made so far.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from omnikit.cli.app import _default_run_dir, app
from omnikit.config import load_recipe, validate_recipe
from omnikit.config.provenance import write_run_metadata
from omnikit.model.checkpoints import check_run_dir

ROOT = Path(__file__).resolve().parents[2]
PAGES = {"swap": ROOT / "docs/tutorials/swap-the-codec.md", "gpu": ROOT / "docs/tutorials/train-on-a-gpu.md",
         "own": ROOT / "docs/tutorials/train-on-your-own-data.md", "scale": ROOT / "docs/tutorials/scale-out.md"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
RUN_FOR_REAL = {"ls", "show", "cp", "validate", "config"}
RUN_DIR_COMMANDS = {"chat", "eval", "serve"}


def blocks(page: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(page.read_text())]


def shell_commands(text: str) -> list[list[str]]:
    lines = text.replace("\\\n", " ").splitlines()
    return [argv for argv in (shlex.split(ln, comments=True) for ln in lines) if argv]


class Walk:
    """Runs a page's blocks in order in the current (scratch) folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.runner = CliRunner()
        self.root = typer.main.get_command(app)
        self.run_dirs: set[Path] = set()
        self.done: list[str] = []  # what was checked, for the assertions on coverage

    def command(self, argv: list[str], expected: str | None = None) -> None:
        assert argv[0] == "omnikit", f"not an omnikit command: {shlex.join(argv)}"
        name = argv[1]
        assert name in self.root.commands, f"no command `omnikit {name}`"
        if name in RUN_FOR_REAL or expected is not None:
            res = self.runner.invoke(app, argv[1:])
            fails = expected is not None and expected.lstrip().startswith("error:")
            assert (res.exit_code != 0) == fails, f"{shlex.join(argv)} -> {res.exit_code}:\n{res.output}"
            if expected is not None:
                _assert_shown(expected, res.output, argv)
            self.done.append(f"ran {name}")
        elif name == "run":
            self._validate_run(argv)
        elif name in RUN_DIR_COMMANDS:
            params = self._parse(argv)
            run_dir = Path(params["run_dir"]).resolve()
            assert run_dir in self.run_dirs, f"{shlex.join(argv)}: no `omnikit run` above trains into {run_dir}"
            self.done.append(f"validated {name}")
        else:
            pytest.fail(f"`omnikit {name}` is shown but this test does not check it")

    def _parse(self, argv: list[str]) -> dict:
        ctx = self.root.commands[argv[1]].make_context(argv[1], list(argv[2:]))
        return dict(ctx.params)

    def _validate_run(self, argv: list[str]) -> None:
        p = self._parse(argv)
        cfg = load_recipe(p["recipe"], p["overrides"] or [])
        validate_recipe(cfg, source=p["recipe"])
        if p["stage"] is not None:
            assert p["stage"] in cfg.schedule, f"{shlex.join(argv)}: stage not in the schedule"
        if not p["dry_run"]:
            out = Path(p["run_dir"] or _default_run_dir(p["recipe"], cfg))
            check_run_dir(cfg, out)  # the CLI's checks before training: a changed model exits 2
            write_run_metadata(out, cfg)
            self.run_dirs.add(out.resolve())
        self.done.append("validated run" + (" --dry-run" if p["dry_run"] else ""))

    def yaml_block(self, text: str) -> None:
        first, _, body = text.partition("\n")
        m = re.fullmatch(r"# ([\w.-]+\.yaml)(, under model:)?", first.strip())
        if m is None:
            assert any(text in f.read_text() for f in self.folder.glob("*.yaml")), f"not in any file:\n{text}"
            self.done.append("excerpt")
            return
        target = self.folder / m.group(1)
        if not m.group(2):
            target.write_text(body)
            self.done.append(f"wrote {target.name}")
            return
        lines = target.read_text().splitlines(keepends=True)
        for key in re.findall(r"^  (\w+):", body, flags=re.M):
            start = lines.index("model:\n") + 1
            begin = next(i for i in range(start, len(lines)) if lines[i].startswith(f"  {key}:"))
            end = next(i for i in range(begin + 1, len(lines)) if not lines[i].startswith("   "))
            entry = re.search(rf"^  {key}:\n(?:   .*\n)*", body, flags=re.M).group(0)
            lines[begin:end] = [entry]
        target.write_text("".join(lines))
        self.done.append(f"edited {target.name}")

    def page(self, page: Path) -> None:
        for lang, text in blocks(page):
            if lang == "bash":
                for argv in shell_commands(text):
                    self.command(argv)
            elif lang == "yaml":
                self.yaml_block(text)
            elif lang == "text" and text.startswith("$ "):
                first, _, expected = text.partition("\n")
                self.command(shlex.split(first[2:]), expected)
            else:
                assert lang in ("text", ""), f"{page.name}: a ```{lang} block that this test does not check"


def _assert_shown(expected: str, output: str, argv: list[str]) -> None:
    out = [ln.rstrip() for ln in output.splitlines()]
    chunks, chunk = [], []
    for ln in expected.splitlines():
        if ln.strip() == "...":
            chunks.append(chunk)
            chunk = []
        else:
            chunk.append(ln.rstrip())
    chunks.append(chunk)
    for chunk in filter(None, chunks):
        found = any(out[i:i + len(chunk)] == chunk for i in range(len(out) - len(chunk) + 1))
        assert found, f"`{shlex.join(argv)}` does not print:\n" + "\n".join(chunk) + "\n--- it prints:\n" + output


@pytest.fixture
def walk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return Walk(tmp_path)


def test_every_shell_block_on_the_tutorial_pages_is_omnikit_commands():
    for page in PAGES.values():
        commands = [argv for lang, text in blocks(page) if lang in ("bash", "sh", "shell", "console")
                    for argv in shell_commands(text)]
        assert len(commands) >= 5, page.name
        assert all(argv[0] == "omnikit" for argv in commands), page.name


def test_swap_the_codec(walk):
    walk.page(PAGES["swap"])
    assert walk.done.count("validated run --dry-run") == 1  # in a bash block; then run for real under `$`
    assert {"ran cp", "excerpt", "edited my_smoke.yaml", "validated run"} <= set(walk.done)
    assert "name: waveform_vq" in (walk.folder / "my_smoke.yaml").read_text()
    assert (walk.folder / "runs/my_smoke_waveform_vq/recipe.yaml").is_file()


def test_train_on_a_gpu(walk):
    walk.page(PAGES["gpu"])
    assert {"wrote my_gpu.yaml", "validated eval", "validated chat"} <= set(walk.done)
    assert walk.done.count("validated run") >= 4
    assert Path("runs/freeze_omni_gpu").resolve() in walk.run_dirs


def test_train_on_your_own_data(walk):
    walk.page(PAGES["own"])
    wrote = {f"wrote {n}.yaml" for n in ("my_corpus", "my_librispeech", "my_dialogue", "my_german")}
    assert wrote | {"ran validate", "ran show"} <= set(walk.done)
    assert walk.done.count("validated run") >= 9
    # tests/recipes/test_corpora.py trains from these very files (it reads them from the page)
    assert walk.folder.joinpath("my_corpus.yaml").read_text().startswith("include: [smoke.yaml, _base/corpus_folder")


def test_scale_out(walk):
    walk.page(PAGES["scale"])
    assert {"wrote my_ddp.yaml", "wrote my_gpu.yaml"} <= set(walk.done)
    assert walk.done.count("validated run") >= 5
    # the page says my_ddp.yaml is recipes/smoke_ddp.yaml (which tests/recipes/test_ddp.py runs) renamed
    mine, shipped = load_recipe(walk.folder / "my_ddp.yaml"), load_recipe("smoke_ddp.yaml")
    mine.name = shipped.name
    assert mine == shipped
