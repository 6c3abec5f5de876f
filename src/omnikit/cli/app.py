"""The ``omnikit`` command line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer
from omegaconf import OmegaConf

from omnikit.cli.errors import UsageError, guarded
from omnikit.cli.listing import autoload_note, format_table, list_rows, plugin_rows, show_text
from omnikit.config import load_recipe, packaged_recipes_dir, resolve_recipe_path, resolved, validate_recipe
from omnikit.registry import KINDS

app = typer.Typer(
    help="omnikit: speech-to-speech dialogue on a frozen text LLM, composed from plugins by YAML recipes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RecipeArg = Annotated[str, typer.Argument(help="Recipe YAML: a path, or the name of a packaged recipe.")]
OverridesArg = Annotated[
    list[str] | None, typer.Argument(help="Dotlist overrides, e.g. stages.input_1_ctc.optim.lr=3e-4")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show full tracebacks.")]
RUN_MARKERS = ("run.json", "provenance.json")
"""Files that only a run directory holds next to its ``recipe.yaml``."""


def _version(value: bool) -> None:
    if value:
        import omnikit

        typer.echo(f"omnikit {omnikit.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the omnikit version and exit.")] = False,
) -> None:
    """omnikit: speech-to-speech dialogue on a frozen text LLM, composed from plugins by YAML recipes."""


def _load_valid(recipe: str, overrides: list[str] | None):
    cfg = load_recipe(recipe, overrides or [])
    validate_recipe(cfg, source=str(recipe))
    return cfg


def _default_run_dir(recipe: str, cfg) -> Path:
    """A run directory's own ``recipe.yaml`` continues that run (from any folder); any other recipe trains into
    its ``paths.out`` (default ``runs/<name>``, relative to the current folder)."""
    src = resolve_recipe_path(recipe)
    if src.name == "recipe.yaml" and any((src.parent / m).is_file() for m in RUN_MARKERS):
        return src.parent
    return Path(str(resolved(cfg).get("paths", {}).get("out") or f"runs/{cfg.get('name', 'run')}"))


def _check_run_dir_arg(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    if not (run_dir / "recipe.yaml").is_file():
        raise UsageError(f"{run_dir} is not a run directory (it has no recipe.yaml; `omnikit run` writes one)")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UsageError(f"unknown kind '{kind}'; kinds: {', '.join(KINDS)}")


@app.command()
def run(
    recipe: RecipeArg,
    overrides: OverridesArg = None,
    stage: Annotated[str | None, typer.Option(help="Run only this stage of the schedule.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and build every part on the meta device; train nothing.")
    ] = False,
    run_dir: Annotated[Path | None, typer.Option(
        help="Run directory (default: the recipe's paths.out; for RUN/recipe.yaml, RUN itself).")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run a recipe's stages in schedule order (or one with --stage)."""
    with guarded(verbose):
        cfg = _load_valid(recipe, overrides)
        if stage is not None and stage not in (cfg.get("schedule") or []):
            raise UsageError(f"stage '{stage}' is not in the schedule: {', '.join(cfg.schedule)}")
        out = run_dir or _default_run_dir(recipe, cfg)
        from omnikit.training.runner import run_recipe  # heavy imports only when running

        if not dry_run:
            from omnikit.config.provenance import write_run_metadata
            from omnikit.model.checkpoints import check_run_dir

            check_run_dir(cfg, out)  # before recipe.yaml is rewritten: a changed model stops here (exit 2)
            write_run_metadata(out, cfg)
            typer.echo(f"[omnikit] run dir: {out.resolve()}")
        run_recipe(cfg, out, stage=stage, dry_run=dry_run, verbose=verbose)
        if not dry_run and stage is None and cfg.get("eval") is not None:
            # a recipe with an `eval` section ends with its report (and demo), as the quickstart does
            from omnikit.evaluation.report import evaluate_run

            evaluate_run(out)
            _say_where(out)


def _say_where(run_dir: Path) -> None:
    """The end of a full run: where the report and the demo are, and the exact line to talk to the result."""
    run_dir = run_dir.resolve()
    ev = run_dir / "eval"
    typer.echo(f"report: {ev / 'report.md'}")
    demo = ev / "demo"
    if (demo / "question.wav").exists():
        typer.echo(f"demo:   {demo} (question.wav, answer.wav, transcript.txt)")
        typer.echo(f"talk to it: omnikit chat {run_dir} --input {demo / 'question.wav'} -o answer.wav")
    typer.echo(f"or type:    omnikit chat {run_dir} --text \"What is the capital of France?\" -o answer.wav")


@app.command()
def validate(recipe: RecipeArg, overrides: OverridesArg = None, verbose: VerboseOpt = False) -> None:
    """Check a recipe against the registries; report every problem at once (exit code 2)."""
    with guarded(verbose):
        _load_valid(recipe, overrides)
        typer.echo(f"{recipe}: ok")


@app.command()
def config(
    recipe: RecipeArg,
    overrides: OverridesArg = None,
    raw: Annotated[bool, typer.Option(help="Keep ${...} interpolations unresolved.")] = False,
    check: Annotated[bool, typer.Option(
        "--check/--no-check", help="Validate first (exit 2 on problems); --no-check prints a broken recipe too.")] = True,
    verbose: VerboseOpt = False,
) -> None:
    """Print the resolved recipe (includes and overrides applied), after validating it."""
    with guarded(verbose):
        cfg = _load_valid(recipe, overrides) if check else load_recipe(recipe, overrides or [])
        typer.echo(OmegaConf.to_yaml(cfg if raw else resolved(cfg)), nl=False)


@app.command("ls")
def ls_(
    kind: Annotated[str | None, typer.Argument(help=f"One of: {', '.join(KINDS)}.")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """List registered components: names, summaries and providers."""
    with guarded(verbose):
        if kind:
            _check_kind(kind)
        typer.echo(format_table(list_rows(kind), ("kind", "name", "summary", "provider")))
        if autoload_note():
            typer.echo(f"\nnote: {autoload_note()}")


@app.command()
def show(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(KINDS)}.")],
    name: Annotated[str, typer.Argument(help="Component name, as in `omnikit ls`.")],
    verbose: VerboseOpt = False,
) -> None:
    """Show one component's docs and config fields (types, defaults, docs) and its provider."""
    with guarded(verbose):
        _check_kind(kind)
        typer.echo(show_text(kind, name))


@app.command()
def plugins(verbose: VerboseOpt = False) -> None:
    """List the distributions that provide components: loaded, failed or disabled."""
    with guarded(verbose):
        typer.echo(format_table(plugin_rows(), ("distribution", "version", "status", "components")))


@app.command()
def cp(
    recipe: Annotated[str, typer.Argument(help="A packaged recipe name (e.g. quickstart.yaml) or a path.")],
    dest: Annotated[str, typer.Argument(help="Destination file, or folder (existing, or ending in /).")],
    verbose: VerboseOpt = False,
) -> None:
    """Copy a recipe (e.g. a packaged one) to edit it; its includes still resolve to the packaged bases."""
    with guarded(verbose):
        src = resolve_recipe_path(recipe)
        folder = Path(dest)
        target = folder / src.name if folder.is_dir() or dest.endswith(("/", os.sep)) else folder
        if target.exists():
            raise UsageError(f"{target} exists; not overwriting")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        typer.echo(f"copied {src.relative_to(packaged_recipes_dir()) if src.is_relative_to(packaged_recipes_dir()) else src} -> {target}")


@app.command()
def chat(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory (holds recipe.yaml and stages/).")],
    inputs: Annotated[list[Path] | None, typer.Option(
        "--input", "-i",
        help="Spoken question(s): audio files; several make a multi-turn conversation.")] = None,
    text: Annotated[str | None, typer.Option(help="A written question, answered in speech.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the spoken answer(s) here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print text, decisions and latency as JSON.")] = False,
    interrupt_at: Annotated[float | None, typer.Option(
        help="Start the next input after this many seconds of the answer's audio (barge-in).")] = None,
    realtime: Annotated[bool, typer.Option(help="Pace the input at real time, like a microphone.")] = False,
    tail_silence: Annotated[float, typer.Option(help="Seconds of silence streamed after each input.")] = 2.5,
    greedy: Annotated[bool, typer.Option(help="Greedy text decoding (reproducible answers).")] = False,
    system_prompt: Annotated[str | None, typer.Option(help="Override the system prompt.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    verbose: VerboseOpt = False,
) -> None:
    """Talk to a trained run: stream spoken questions (or a written one) and get spoken answers."""
    with guarded(verbose):
        if bool(inputs) == bool(text):
            raise UsageError("give either --input FILE (one or more) or --text QUESTION")
        if interrupt_at is not None and len(inputs or []) < 2:
            raise UsageError("--interrupt-at needs at least two --input files")
        for p in inputs or []:
            if p.is_dir():
                raise UsageError(f"--input {p} is a folder, not an audio file (give files, e.g. {p / '*.wav'})")
        from omnikit.audio.io import write_audio
        from omnikit.inference.chat import ChatDriver, load_inputs
        from omnikit.inference.dialogue_model import DialogueModel

        wavs = load_inputs(list(inputs)) if inputs else []
        overrides = {"inference": {"greedy": True}} if greedy else None
        model = DialogueModel.from_run_dir(run_dir, device=device, overrides=overrides)
        driver = ChatDriver(model, tail_silence_s=tail_silence, realtime=realtime, system_prompt=system_prompt)
        result = driver.ask(text) if text else driver.run(wavs, interrupt_at=interrupt_at)
        names = ", ".join(str(p) for p in inputs or []) or repr(text)
        if not result.turns:
            raise RuntimeError(f"no answer: no user turn was decided 'respond' in {names} "
                               f"(decisions: {[d['decision'] for d in result.decisions] or 'none, no speech found'})")
        if result.audio.numel() == 0 and not any(t.text for t in result.turns):
            raise RuntimeError(f"no answer: {len(result.turns)} turn(s) of {names} were answered with no text and "
                               "no audio" + (f"; {output} not written" if output is not None else ""))
        if output is not None:
            write_audio(output, result.audio, result.sample_rate)
        if as_json:
            import json

            payload = result.to_json() | {"output": str(output) if output else None}
            typer.echo(json.dumps(payload, indent=2))
        else:
            for t in result.turns:
                typer.echo(f"answer {t.answer}{' (interrupted)' if t.interrupted else ''}: {t.text}")
            if output is not None:
                typer.echo(f"wrote {output} ({result.audio.numel() / result.sample_rate:.2f} s)")


@app.command()
def serve(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory (holds recipe.yaml and stages/).")],
    host: Annotated[str, typer.Option(help="Interface to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one).")] = 8000,
    max_sessions: Annotated[int, typer.Option(min=1, help="Concurrent sessions; one more is refused (close 1013).")] = 4,
    token: Annotated[str | None, typer.Option(
        envvar="OMNIKIT_SERVE_TOKEN",
        help="Require this bearer token (or set OMNIKIT_SERVE_TOKEN, which keeps it out of the process list).")] = None,
    idle_timeout: Annotated[float, typer.Option(
        min=0, help="Close a connection that sent nothing for this many seconds while idle (0: never).")] = 300.0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    verbose: VerboseOpt = False,
) -> None:
    """Serve a trained run to many users at once: a websocket protocol and a web page (docs/serving.md)."""
    with guarded(verbose):
        _check_run_dir_arg(run_dir)
        if token is not None and not token.strip():
            raise UsageError("--token is empty (leave it out to serve without a token)")
        from omnikit.inference.dialogue_model import DialogueModel
        from omnikit.serving import server
        from omnikit.serving.app import ServeConfig, create_app

        sock = server.bind(host, port)  # a busy port fails before the model loads
        model = DialogueModel.from_run_dir(run_dir, device=device)
        config = ServeConfig(max_sessions=max_sessions, token=token, idle_timeout_s=idle_timeout or None)
        where, bound = server.url_host(sock)
        if token is None and not server.is_loopback(host):
            typer.echo(f"warning: listening on {host} without --token: anyone who can reach port {bound} can use "
                       "the model", err=True)

        def started() -> None:
            typer.echo(f"[omnikit] serving {run_dir} at http://{where}:{bound}/ (websocket /ws; up to "
                       f"{max_sessions} sessions{'; token required' if token else ''}); Ctrl-C stops")

        server.run(create_app(model, config), sock, log_level="info" if verbose else "warning", on_start=started)


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory.")],
    out: Annotated[Path | None, typer.Option(help="Where report.md, metrics.json and plots go (default RUN_DIR/eval).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many examples per evaluated part.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    verbose: VerboseOpt = False,
) -> None:
    """Evaluate a trained run: ASR, spoken vs written QA, output intelligibility, duplex, latency, cost."""
    with guarded(verbose):
        _check_run_dir_arg(run_dir)
        from omnikit.evaluation.report import evaluate_run

        evaluate_run(run_dir, out, limit=limit, device=device)
        typer.echo(f"wrote {(out or run_dir / 'eval') / 'report.md'}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
