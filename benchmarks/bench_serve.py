"""Load on ``omnikit serve``: N concurrent simulated clients streaming spoken turns in real time over loopback.

The server runs in a child process (as ``omnikit serve`` would) over a trained run; each client streams 20 ms
PCM16 frames paced at real time: silence, a spoken question, then silence (as a microphone does) until the answer
has ended, for ``--turns`` turns, and finally ``end``. The question is a loud tone burst unless ``--wav`` gives a
recording, so the server uses an energy VAD with the VAD-endpoint policy (480 ms of silence decides): this measures
serving (scheduling, queues, the model's per-step cost under contention), not turn-taking quality.

Per N: end of the question's speech (the client sent its last speech frame) -> first answer PCM received (p50 /
p90), -> decision received, the *input lag* (audio the client had sent when a decision arrived, minus the audio
position the decision was made at: how far the server runs behind real time), sessions dropped (closed other than
by ``end``), error events, and the server's busy time.

Then a fuzz: ``--fuzz`` malformed frames (random and odd-length bytes, oversize frames, float NaN audio, bad and
oversize JSON, wrong types, second starts; some connections ask a question and vanish without a close handshake)
while one client talks three turns: whether the server survived and whether the talker noticed anything.

    python benchmarks/bench_serve.py [RUN_DIR] [--clients 1 2 4] [--turns 2] [--answer-tokens 12] [--fuzz 1000]

Without RUN_DIR: ``runs/smoke`` if finished, otherwise a tiny smoke run is trained first (said in the output).
Writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "serve.json"
STAGES = ["input_1_ctc", "input_2_align", "input_3_dialogue", "output_1_codec", "output_2_decoder", "output_3_prefix"]
SR = 16000
FRAME = 320  # 20 ms, as the web page sends
REALTIME_LAG_MS = 500.0
"""A load level counts as real time when the p90 input lag stays under this and no session is dropped."""


# ---------------------------------------------------------------------- server (child process)
def serve(run_dir: str, answer_tokens: int, port_file: str) -> None:
    from omegaconf import OmegaConf

    from omnikit.inference.dialogue_model import DialogueModel
    from omnikit.model.checkpoints import merged_weights
    from omnikit.serving import server
    from omnikit.serving.app import ServeConfig, create_app

    cfg = OmegaConf.load(Path(run_dir) / "recipe.yaml")
    cfg.model.vad = OmegaConf.create({"name": "energy", "args": {}})
    cfg.model.duplex_policy = OmegaConf.create({"name": "vad_endpoint", "args": {"endpoint_ms": 480}})
    cfg.inference = OmegaConf.merge(cfg.inference, {"greedy": True, "max_answer_tokens": answer_tokens})
    model = DialogueModel.from_recipe(cfg, merged_weights(Path(run_dir), list(cfg.schedule)))
    sock = server.bind("127.0.0.1", 0)
    app = create_app(model, ServeConfig(max_sessions=64, idle_timeout_s=None))

    def started() -> None:
        Path(port_file).write_text(str(sock.getsockname()[1]))

    server.run(app, sock, on_start=started)


# ---------------------------------------------------------------------- clients
def question_audio(wav: Path | None) -> np.ndarray:
    if wav is not None:
        from omnikit.audio.io import load_audio

        return load_audio(wav).numpy().astype(np.float32)
    t = np.arange(int(0.8 * SR)) / SR
    rng = np.random.default_rng(0)
    return (0.3 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).round().astype("<i2").tobytes()


async def client(port: int, question: np.ndarray, turns: int, answer_timeout_s: float) -> dict[str, Any]:
    import websockets

    out: dict[str, Any] = {"first_pcm_ms": [], "decision_ms": [], "input_lag_ms": [], "errors": 0,
                           "unanswered": 0, "close": None}
    sent = 0  # samples sent so far
    t0 = 0.0
    state: dict[str, Any] = {"speech_end": None, "got_pcm": False, "answer_done": asyncio.Event()}

    async def reader(ws: Any) -> None:
        async for msg in ws:
            now = time.perf_counter()
            if isinstance(msg, bytes):
                if state["speech_end"] is not None and not state["got_pcm"]:
                    state["got_pcm"] = True
                    out["first_pcm_ms"].append((now - state["speech_end"]) * 1000)
                continue
            ev = json.loads(msg)
            if ev["type"] == "decision" and ev.get("decision") == "respond":
                out["input_lag_ms"].append((sent / SR - ev["t"]) * 1000)
                if state["speech_end"] is not None:
                    out["decision_ms"].append((now - state["speech_end"]) * 1000)
            elif ev["type"] in ("answer_end", "interrupt"):
                state["answer_done"].set()
            elif ev["type"] == "error":
                out["errors"] += 1

    async def stream(ws: Any, pcm: np.ndarray) -> None:
        nonlocal sent
        for i in range(0, pcm.size, FRAME):
            due = t0 + (sent + FRAME) / SR  # real time: a frame leaves once its 20 ms have been "spoken"
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await ws.send(pcm16(pcm[i : i + FRAME]))
            sent += min(FRAME, pcm.size - i)

    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None, open_timeout=30) as ws:
            json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "start"}))
            task = asyncio.create_task(reader(ws))
            t0 = time.perf_counter()
            silence = np.zeros(FRAME * 10, dtype=np.float32)  # 200 ms pieces while waiting
            for _ in range(turns):
                state.update(speech_end=None, got_pcm=False)
                state["answer_done"].clear()
                await stream(ws, np.zeros(SR // 2, dtype=np.float32))
                await stream(ws, question)
                state["speech_end"] = time.perf_counter()
                deadline = time.perf_counter() + answer_timeout_s
                while not state["answer_done"].is_set() and time.perf_counter() < deadline:
                    await stream(ws, silence)
                if not state["answer_done"].is_set():
                    out["unanswered"] += 1
            await ws.send(json.dumps({"type": "end"}))
            await asyncio.wait_for(task, answer_timeout_s)
            out["close"] = ws.close_code
    except Exception as exc:  # a dropped or failed session
        out["close"] = f"{type(exc).__name__}: {exc}"[:200]
    return out


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, q)), 1)


async def load_level(port: int, n: int, question: np.ndarray, turns: int, timeout: float) -> dict[str, Any]:
    import urllib.request

    def health() -> dict[str, Any]:
        return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10))

    before = health()
    t = time.perf_counter()
    results = await asyncio.gather(*(client(port, question, turns, timeout) for _ in range(n)))
    wall = time.perf_counter() - t
    after = health()
    first = [v for r in results for v in r["first_pcm_ms"]]
    lag = [v for r in results for v in r["input_lag_ms"]]
    return {
        "clients": n, "turns_per_client": turns, "answered_turns": len(first),
        "unanswered_turns": sum(r["unanswered"] for r in results),
        "speech_end_to_first_pcm_ms": {"p50": pct(first, 50), "p90": pct(first, 90)},
        "speech_end_to_decision_ms": {"p50": pct([v for r in results for v in r["decision_ms"]], 50),
                                      "p90": pct([v for r in results for v in r["decision_ms"]], 90)},
        "input_lag_ms": {"p50": pct(lag, 50), "p90": pct(lag, 90), "max": pct(lag, 100)},
        "dropped_sessions": sum(1 for r in results if r["close"] != 1000),
        "error_events": sum(r["errors"] for r in results),
        "closes": sorted({str(r["close"]) for r in results}),
        "wall_s": round(wall, 1),
        "server_busy_fraction": round((after["work_s"] - before["work_s"]) / wall, 3),
    }


def malformed(rng: random.Random) -> str | bytes:
    """One message the protocol must refuse (with an error event, or by closing that connection only)."""
    pick = rng.randrange(12)
    if pick == 0:
        return rng.randbytes(rng.randrange(1, 4000) | 1)  # odd length: not whole samples
    if pick == 1:
        return rng.randbytes(70_000)  # over max_frame_bytes
    if pick == 2:
        return b""
    if pick == 3:
        return np.full(800, np.nan, dtype=np.float32).tobytes()[:3199]  # float NaN audio, cut mid-sample
    if pick == 4:
        return rng.randbytes(rng.randrange(1, 300)).decode("latin-1")  # not JSON
    if pick == 5:
        return json.dumps(rng.choice([[], 3, "start", None, {"type": 5}, {"kind": "start"}, {"type": "dance"}]))
    if pick == 6:
        return '{"type": "text", "text": NaN}'
    if pick == 7:
        return json.dumps({"type": "text", "text": rng.choice([{}, [], 7, "", "   "])})
    if pick == 8:
        return json.dumps({"type": "text", "text": "x" * 2_001})
    if pick == 9:
        return "[" * 20_000  # over max_message_bytes
    if pick == 10:
        return json.dumps({"type": "start"})  # a second start
    return "{" * rng.randrange(1, 50)


async def fuzzer(port: int, frames: int, seed: int = 0) -> dict[str, Any]:
    """Connections that send only malformed frames, some asking a question and vanishing mid-answer."""
    import websockets

    rng, sent, conns, aborted = random.Random(seed), 0, 0, 0
    while sent < frames:
        conns += 1
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=None, open_timeout=30) as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "start"}))
                for _ in range(min(rng.randint(1, 60), frames - sent)):  # beyond 50 the server closes (1008)
                    await ws.send(malformed(rng))
                    sent += 1
                if rng.random() < 0.3:  # a question, then gone without a close handshake
                    await ws.send(json.dumps({"type": "text", "text": "hello?"}))
                    await asyncio.sleep(rng.random() * 0.5)
                    ws.transport.abort()
                    aborted += 1
        except Exception:  # closed by the server for too many malformed messages, or aborted: both expected
            pass
    return {"malformed_frames_sent": sent, "fuzz_connections": conns, "aborted_mid_answer": aborted}


async def fuzz_level(port: int, question: np.ndarray, frames: int, timeout: float) -> dict[str, Any]:
    """Fuzz while one client talks (three turns): did the talker notice anything?"""
    talker, fuzzed = await asyncio.gather(client(port, question, 3, timeout), fuzzer(port, frames))
    affected = talker["close"] != 1000 or talker["errors"] > 0 or talker["unanswered"] > 0
    return {**fuzzed, "talker_turns_answered": len(talker["first_pcm_ms"]),
            "other_sessions_affected": int(affected)}


def health_ok(port: int) -> bool:
    import urllib.request

    try:
        return bool(json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10))["ok"])
    except Exception:
        return False


# ---------------------------------------------------------------------- main
def smoke_run() -> tuple[Path, str]:
    run = ROOT / "runs" / "smoke"
    if all((run / "stages" / s / "done.json").is_file() for s in STAGES):
        return run, f"the finished smoke run {run}"
    run = Path(tempfile.mkdtemp(prefix="bench_serve_")) / "run"
    print(f"[bench_serve] no trained run given and no finished runs/smoke: training a tiny smoke run into {run}",
          flush=True)
    tiny = ["data.world.args.num_train=8", "data.world.args.num_dev=2",
            *(f"stages.{s}.trainer.max_steps=2" for s in STAGES)]
    subprocess.run([sys.executable, "-c", "from omnikit.cli.app import main; main()", "run",
                    str(ROOT / "recipes" / "smoke.yaml"), *tiny, "--run-dir", str(run)], check=True,
                   stdout=subprocess.DEVNULL)
    return run, "a tiny smoke run trained for this benchmark (6 stages x 2 steps): the model is untrained"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, nargs="?")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--turns", type=int, default=2)
    ap.add_argument("--answer-tokens", type=int, default=12)
    ap.add_argument("--answer-timeout", type=float, default=30.0)
    ap.add_argument("--fuzz", type=int, default=1000, help="Malformed frames sent while a client talks (0: none)")
    ap.add_argument("--wav", type=Path, help="A spoken question (default: a tone burst)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--serve", nargs=2, metavar=("RUN_DIR", "PORT_FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve[0], args.answer_tokens, args.serve[1])

    from omnikit.evaluation.machine import machine_info

    run, what = (args.run_dir, f"the run {args.run_dir}") if args.run_dir else smoke_run()
    print(f"[bench_serve] serving {what}", flush=True)
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(run), str(port_file),
                             "--answer-tokens", str(args.answer_tokens)])
    try:
        deadline = time.time() + 300
        while not port_file.is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        if not port_file.is_file():
            raise SystemExit("the server did not start")
        port = int(port_file.read_text())
        time.sleep(0.5)
        question = question_audio(args.wav)
        levels = []
        for n in args.clients:
            level = asyncio.run(load_level(port, n, question, args.turns, args.answer_timeout))
            print(f"[bench_serve] {n} clients: first PCM p50 {level['speech_end_to_first_pcm_ms']['p50']} ms, "
                  f"p90 {level['speech_end_to_first_pcm_ms']['p90']} ms; input lag p90 "
                  f"{level['input_lag_ms']['p90']} ms; dropped {level['dropped_sessions']}", flush=True)
            levels.append(level)
        fuzz: dict[str, Any] = {}
        if args.fuzz:
            fuzz = asyncio.run(fuzz_level(port, question, args.fuzz, args.answer_timeout))
            fuzz["server_crashes"] = int(proc.poll() is not None or not health_ok(port))
            print(f"[bench_serve] fuzz: {fuzz}", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    realtime = [lv["clients"] for lv in levels if lv["dropped_sessions"] == 0 and not lv["unanswered_turns"]
                and lv["input_lag_ms"]["p90"] is not None and lv["input_lag_ms"]["p90"] < REALTIME_LAG_MS]
    result = {
        "run": str(run), "model": what, "question": str(args.wav) if args.wav else "tone burst 0.8 s",
        "answer_tokens": args.answer_tokens, "batched_llm_steps": False,
        "realtime_sessions": max(realtime) if realtime else 0,
        "realtime_rule": f"p90 input lag < {REALTIME_LAG_MS:.0f} ms, every turn answered, nobody dropped",
        "levels": levels, "fuzz": fuzz, "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[bench_serve] wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
