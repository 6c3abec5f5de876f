"""``omnikit serve`` over a tiny trained smoke run, through FastAPI's test client: the protocol's events in order
for a written and a spoken question, interrupts (by the client and by voice), the session limit, the token, the
origin check, malformed messages, the idle timeout, sessions that do not disturb each other, and the scheduler's
bounded queues."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from omnikit.cli.app import app as cli
from omnikit.serving.app import ServeConfig, create_app
from omnikit.serving.protocol import Limits, float_to_pcm16
from omnikit.serving.scheduler import Client, Outgoing, Scheduler

pytestmark = pytest.mark.timeout(600)
SR = 16000


def burst(seconds: float, seed: int = 0) -> torch.Tensor:
    """A loud noise-modulated tone: speech to the energy VAD."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    return 0.3 * torch.sin(2 * torch.pi * 300 * t) + 0.05 * torch.randn(t.numel(), generator=g)


def silence(seconds: float) -> torch.Tensor:
    return torch.zeros(int(seconds * SR))


QUESTION = torch.cat([silence(0.5), burst(0.8), silence(1.0)])


def send_audio(ws, pcm: torch.Tensor, frame_s: float = 0.02) -> None:
    data, step = float_to_pcm16(pcm), int(frame_s * SR) * 2
    for i in range(0, len(data), step):
        ws.send_bytes(data[i : i + step])


def recv(ws) -> dict:
    msg = ws.receive()
    if msg["type"] == "websocket.close":
        return {"type": "close", "code": msg["code"], "reason": msg.get("reason") or ""}
    if msg.get("bytes") is not None:
        return {"type": "pcm", "bytes": msg["bytes"]}
    return json.loads(msg["text"])


def until(ws, stop, limit: int = 20_000) -> list[dict]:
    out = []
    for _ in range(limit):
        out.append(recv(ws))
        if stop(out[-1]) or out[-1]["type"] == "close":
            return out
    raise AssertionError(f"no stop message in {limit} messages; last: {[m['type'] for m in out[-10:]]}")


def is_type(kind: str, **fields):
    return lambda m: m["type"] == kind and all(m.get(k) == v for k, v in fields.items())


def index(msgs: list[dict], pred) -> int:
    return next(i for i, m in enumerate(msgs) if pred(m))


def connect_ready(client, path: str = "/ws", **kw):
    ws = client.websocket_connect(path, **kw).__enter__()
    ready = recv(ws)
    assert ready["type"] == "ready", ready
    return ws, ready


@pytest.fixture
def endless(serve_model, monkeypatch):
    """The same weights with answers that never end by themselves: only an interrupt stops them."""
    monkeypatch.setattr(serve_model.llm, "is_end_of_turn", lambda token: False)
    settings = dataclasses.replace(serve_model.settings, max_answer_tokens=10**6)
    return dataclasses.replace(serve_model, settings=settings)


def test_text_question_events_in_order(serve_model):
    with TestClient(create_app(serve_model)) as client, client.websocket_connect("/ws") as ws:
        ready = recv(ws)
        assert ready["protocol"] == 1 and ready["input"] == {"format": "pcm_s16le", "channels": 1,
                                                             "sample_rate": 16000, "max_frame_bytes": 64000}
        rate = ready["output"]["sample_rate"]
        for msg in ({"type": "start"}, {"type": "text", "text": "What is two plus two?"}, {"type": "end"}):
            ws.send_json(msg)
        msgs = until(ws, is_type("close"))
    types = [m["type"] for m in msgs]
    assert types[:2] == ["started", "state"] and types[-2:] == ["bye", "close"]
    assert msgs[-1]["code"] == 1000 and msgs[-1]["reason"] == "end"
    decision = index(msgs, is_type("decision"))
    assert msgs[decision]["decision"] == "respond" and msgs[decision]["reason"] == "text"
    start, end = index(msgs, is_type("answer_start", answer=1)), index(msgs, is_type("answer_end", answer=1))
    latency = index(msgs, is_type("latency", answer=1))
    first_text = index(msgs, is_type("text"))
    assert decision < start < first_text < end < latency < types.index("bye")
    pcm = [i for i, m in enumerate(msgs) if m["type"] == "pcm"]
    assert pcm and start < min(pcm) and max(pcm) < end
    samples = sum(len(msgs[i]["bytes"]) for i in pcm) // 2
    assert samples == round(msgs[end]["audio_s"] * rate)
    assert "".join(m["delta"] for m in msgs if m["type"] == "text").strip() == msgs[end]["text"]
    assert [m["state"] for m in msgs if m["type"] == "state"] == ["listening", "speaking", "listening"]
    lat = msgs[latency]
    assert lat["interrupted"] is False and lat["decision_to_first_pcm_ms"] > 0
    assert lat["decision_to_first_audio_sent_ms"] >= lat["decision_to_first_pcm_ms"] * 0.5 > 0


def test_spoken_question_events_in_order(serve_model):
    with TestClient(create_app(serve_model)) as client, client.websocket_connect("/ws") as ws:
        recv(ws)
        ws.send_json({"type": "start"})
        send_audio(ws, QUESTION)  # faster than real time: queued, processed in order
        ws.send_json({"type": "end"})
        msgs = until(ws, is_type("close"))
    types = [m["type"] for m in msgs]
    assert msgs[-1]["code"] == 1000, msgs[-1]
    speech, decision = types.index("speech_start"), types.index("decision")
    assert speech < decision < index(msgs, is_type("answer_start", answer=1)) < types.index("answer_end")
    assert msgs[decision]["decision"] == "respond" and msgs[decision]["reason"] == "policy"
    assert 0.5 <= msgs[speech]["t"] < msgs[decision]["t"] <= 2.3
    assert [m["state"] for m in msgs if m["type"] == "state"] == ["listening", "hearing", "speaking", "listening"]
    lat = msgs[types.index("latency")]
    assert 400 <= lat["speech_end_to_decision_ms"] <= 800  # the policy's 480 ms of silence, in 160 ms blocks
    assert "pcm" in types[decision:types.index("answer_end")]


def test_client_interrupt_stops_the_answer_and_the_session_goes_on(endless):
    with TestClient(create_app(endless)) as client, client.websocket_connect("/ws") as ws:
        recv(ws)
        for msg in ({"type": "start"}, {"type": "text", "text": "Tell me a long story."}, {"type": "interrupt"},
                    {"type": "text", "text": "And another one?"}, {"type": "interrupt"}, {"type": "end"}):
            ws.send_json(msg)
        msgs = until(ws, is_type("close"))
    assert msgs[-1]["code"] == 1000, msgs[-1]
    cut1 = index(msgs, is_type("interrupt", answer=1))
    cut2 = index(msgs, is_type("interrupt", answer=2))
    start2 = index(msgs, is_type("answer_start", answer=2))
    assert msgs[cut1]["reason"] == "client" and cut1 < start2 < cut2
    # nothing of answer 1 after its interrupt: no text, no audio (PCM frames belong to the latest answer_start)
    between = msgs[cut1 + 1 : start2]
    assert not [m for m in between if m["type"] in ("text", "pcm")], [m["type"] for m in between]
    assert not [m for m in msgs[cut1:] if m["type"] == "text" and m["answer"] == 1]
    lat = [m for m in msgs if m["type"] == "latency"]
    assert [(m["answer"], m["interrupted"]) for m in lat] == [(1, True), (2, True)]
    assert "answer_end" not in [m["type"] for m in msgs]


def test_speaking_over_the_answer_interrupts_it(endless):
    """Barge-in: user speech during an answer is heard (speaking_hearing) and its RESPOND interrupts the answer."""
    with TestClient(create_app(endless)) as client, client.websocket_connect("/ws") as ws:
        recv(ws)
        ws.send_json({"type": "start"})
        ws.send_json({"type": "text", "text": "Talk until I stop you."})
        until(ws, is_type("text", answer=1))
        send_audio(ws, QUESTION)
        msgs = until(ws, is_type("answer_start", answer=2))
        ws.send_json({"type": "interrupt"})
        ws.send_json({"type": "end"})
        rest = until(ws, is_type("close"))
    cut = index(msgs, is_type("interrupt", answer=1))
    assert msgs[cut]["reason"] == "barge_in"
    assert index(msgs, is_type("speech_start")) < index(msgs, is_type("decision", reason="policy")) < cut
    assert "speaking_hearing" in [m["state"] for m in msgs if m["type"] == "state"]
    assert rest[-1]["code"] == 1000


def test_sessions_beyond_the_limit_are_refused_with_a_reason(serve_model):
    with TestClient(create_app(serve_model, ServeConfig(max_sessions=1))) as client:
        with client.websocket_connect("/ws") as first:
            assert recv(first)["type"] == "ready"
            with client.websocket_connect("/ws") as second:
                refused = recv(second)
            assert refused["type"] == "close" and refused["code"] == 1013
            assert "server full" in refused["reason"] and "--max-sessions" in refused["reason"]
            first.send_json({"type": "start"})
            assert recv(first)["type"] == "started"  # the first session is untouched
        for _ in range(100):  # the first session's slot is freed once its handler has finished
            if client.get("/health").json()["sessions"] == 0:
                break
            time.sleep(0.05)
        with client.websocket_connect("/ws") as third:
            assert recv(third)["type"] == "ready"


def test_a_bad_or_missing_token_is_refused(serve_model):
    with TestClient(create_app(serve_model, ServeConfig(token="s3cret"))) as client:
        for path, headers in (("/ws", {}), ("/ws", {"Authorization": "Bearer wrong"}), ("/ws?token=s3cret-",
                                                                                          {}),
                              ("/ws", {"Authorization": "Basic s3cret"})):
            with client.websocket_connect(path, headers=headers) as ws:
                m = recv(ws)
            assert m["type"] == "close" and m["code"] == 1008 and m["reason"].startswith("unauthorized"), (path, m)
        for path, headers in (("/ws", {"Authorization": "Bearer s3cret"}), ("/ws?token=s3cret", {})):
            with client.websocket_connect(path, headers=headers) as ws:
                assert recv(ws)["type"] == "ready"
        assert client.get("/health").json()["auth"] is True


def test_a_page_from_another_origin_is_refused(serve_model):
    with TestClient(create_app(serve_model)) as client:
        with client.websocket_connect("/ws", headers={"Origin": "http://evil.example"}) as ws:
            m = recv(ws)
        assert m["code"] == 1008 and m["reason"] == "origin not allowed"
        with client.websocket_connect("/ws", headers={"Origin": "http://testserver"}) as ws:  # the page's own
            assert recv(ws)["type"] == "ready"


def test_malformed_messages_get_error_events_and_the_connection_survives(serve_model):
    limits = Limits(max_frame_bytes=3200, max_text_chars=100)
    with TestClient(create_app(serve_model, ServeConfig(limits=limits))) as client, \
            client.websocket_connect("/ws") as ws:
        recv(ws)
        before_start = [(b"\x00\x00" * 10, "not_started"), ("not json {", "bad_json"), ("[1, 2]", "bad_json"),
                        ('{"type": "dance"}', "unknown_type"), ('{"no": "type"}', "unknown_type"),
                        ('{"type": "text", "text": 5}', "bad_text"), ('{"type": "text", "text": "hi"}', "not_started"),
                        ('{"type": "interrupt"}', "not_started")]
        after_start = [(b"\x01", "bad_audio"), (b"", "bad_audio"), (b"\x00" * 3202, "frame_too_large"),
                       ('{"type": "start"}', "already_started"), (json.dumps({"type": "text", "text": "x" * 101}),
                                                                 "text_too_long"),
                       ('{"type": "text", "text": "   "}', "bad_text"), ("x" * 20_000, "message_too_large")]
        for data, code in before_start:
            ws.send_bytes(data) if isinstance(data, bytes) else ws.send_text(data)
            m = recv(ws)
            assert m["type"] == "error" and m["code"] == code, (data[:30], m)
        ws.send_json({"type": "start"})
        assert [recv(ws)["type"] for _ in range(2)] == ["started", "state"]
        for data, code in after_start:
            ws.send_bytes(data) if isinstance(data, bytes) else ws.send_text(data)
            m = recv(ws)
            assert m["type"] == "error" and m["code"] == code, (data[:30], m)
        ws.send_json({"type": "text", "text": "Still there?"})  # the session still works
        ws.send_json({"type": "end"})
        msgs = until(ws, is_type("close"))
    assert "answer_end" in [m["type"] for m in msgs] and msgs[-1]["code"] == 1000


def test_too_many_malformed_messages_close_the_connection(serve_model):
    with TestClient(create_app(serve_model, ServeConfig(limits=Limits(max_errors=3)))) as client, \
            client.websocket_connect("/ws") as ws:
        recv(ws)
        for _ in range(3):
            ws.send_text("{")
        msgs = until(ws, is_type("close"))
    assert [m["type"] for m in msgs] == ["error", "error", "error", "close"]
    assert msgs[-1]["code"] == 1008 and "too many malformed messages" in msgs[-1]["reason"]


def test_an_idle_connection_is_closed(serve_model):
    with TestClient(create_app(serve_model, ServeConfig(idle_timeout_s=0.3, watchdog_s=0.05))) as client, \
            client.websocket_connect("/ws") as ws:
        recv(ws)
        ws.send_json({"type": "start"})
        msgs = until(ws, is_type("close"))
    assert msgs[-1]["code"] == 1001 and msgs[-1]["reason"].startswith("idle for 0.3 s")


def test_audio_faster_than_the_input_queue_is_slowed_not_dropped(serve_model):
    limits = Limits(max_queued_input_s=0.3)  # far less than the 2.3 s sent at once
    with TestClient(create_app(serve_model, ServeConfig(limits=limits))) as client, \
            client.websocket_connect("/ws") as ws:
        recv(ws)
        ws.send_json({"type": "start"})
        send_audio(ws, QUESTION, frame_s=0.25)
        ws.send_json({"type": "end"})
        msgs = until(ws, is_type("close"))
    assert msgs[-1]["code"] == 1000 and "answer_end" in [m["type"] for m in msgs]
    assert not [m for m in msgs if m["type"] == "error"]


def test_a_client_leaving_mid_answer_does_not_disturb_another(endless):
    with TestClient(create_app(endless)) as client:
        with client.websocket_connect("/ws") as other:
            recv(other)
            with client.websocket_connect("/ws") as leaver:
                recv(leaver)
                leaver.send_json({"type": "start"})
                leaver.send_json({"type": "text", "text": "Go on and on."})
                until(leaver, is_type("pcm"))
            # the leaver is gone mid-answer; the other session starts, talks and ends normally
            other.send_json({"type": "start"})
            other.send_json({"type": "text", "text": "Hello?"})
            got = until(other, is_type("text", answer=1))
            other.send_json({"type": "interrupt"})
            other.send_json({"type": "end"})
            got += until(other, is_type("close"))
        assert got[-1]["code"] == 1000 and not [m for m in got if m["type"] == "error"]
        for _ in range(100):
            if client.get("/health").json()["sessions"] == 0:
                break
            time.sleep(0.05)
        assert client.get("/health").json()["sessions"] == 0


def test_a_client_that_does_not_read_pauses_only_its_own_answer(endless):
    """Scheduler level: answer audio not yet written to a client's socket is bounded per client."""
    sched = Scheduler(endless, Limits(max_queued_output_s=0.2))
    posted: list[Outgoing] = []

    def poster(reads: bool):
        def post(out: Outgoing) -> None:
            posted.append(out)
            if reads and out.kind == "pcm":
                sched.sent(reader, out.samples)  # written at once
        return post

    deaf, reader = Client(1, post=poster(reads=False)), Client(2, post=poster(reads=True))

    def tokens(c: Client) -> int:  # answer steps taken so far (steps need not produce text or audio)
        return len(c.session.answer.ids)

    sched.start()
    try:
        for c in (deaf, reader):
            sched.add(c)
            sched.submit(c, "start")
            sched.submit(c, "text", "Keep talking.")
        deadline = time.time() + 120
        while deaf.out_samples < sched.max_out_samples and time.time() < deadline:
            time.sleep(0.05)
        assert deaf.out_samples >= sched.max_out_samples, "the client that does not read never reached its limit"
        time.sleep(0.3)
        stalled, moving = tokens(deaf), tokens(reader)
        time.sleep(1.5)
        assert tokens(deaf) == stalled, "the client that does not read kept getting answer steps"
        assert tokens(reader) > moving, "the reading client was held up"
        sched.sent(deaf, deaf.out_samples)  # once it reads, its answer goes on
        time.sleep(1.0)
        assert tokens(deaf) > stalled
    finally:
        sched.stop()
    assert not [o for o in posted if o.kind == "close"]  # nobody was dropped


def test_page_static_files_and_health(serve_model):
    with TestClient(create_app(serve_model)) as client:
        page = client.get("/")
        assert page.status_code == 200 and "omnikit" in page.text and "/static/app.js" in page.text
        for name in ("app.js", "capture-worklet.js"):
            r = client.get(f"/static/{name}")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        assert client.get("/static/index.html").status_code == 404
        assert client.get("/static/..%2Fapp.py").status_code == 404
        health = client.get("/health").json()
        assert health["ok"] is True and health["sessions"] == 0 and health["max_sessions"] == 4


def test_serve_cli_argument_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["serve", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no such run directory" in res.output
    run = tmp_path / "run"
    run.mkdir()
    res = runner.invoke(cli, ["serve", str(run)])
    assert res.exit_code == 2 and "not a run directory" in res.output
    (run / "recipe.yaml").write_text("name: x\n")
    res = runner.invoke(cli, ["serve", str(run), "--token", " "])
    assert res.exit_code == 2 and "--token is empty" in res.output
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        res = runner.invoke(cli, ["serve", str(run), "--port", str(port)])
    finally:
        busy.close()
    assert res.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_serve_cli_starts_a_server(smoke_run, tmp_path):
    """The real command: uvicorn on a free port, a text question over a real websocket, Ctrl-C stops it."""
    proc = subprocess.Popen([sys.executable, "-c", "from omnikit.cli.app import main; main()", "serve", str(smoke_run),
                             "--port", "0", "--max-sessions", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert line.startswith("[omnikit] serving"), line
        url = line.split(" at ")[1].split(" ")[0]
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        for _ in range(200):  # the line is printed just before uvicorn listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"
            ws.send(json.dumps({"type": "start"}))
            ws.send(json.dumps({"type": "text", "text": "hi"}))
            ws.send(json.dumps({"type": "end"}))
            kinds = []
            with pytest.raises(ConnectionClosed):
                while True:
                    m = ws.recv(timeout=60)
                    kinds.append("pcm" if isinstance(m, bytes) else json.loads(m)["type"])
            assert ws.close_code == 1000 and ws.close_reason == "end"
        assert kinds[-1] == "bye" and "answer_start" in kinds and "pcm" in kinds
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130  # Ctrl-C: the exit code of every omnikit command
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
