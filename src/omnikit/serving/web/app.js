// omnikit reference client: microphone -> 16 kHz PCM16 -> websocket; answer PCM -> a small jitter buffer -> speakers.
// Protocol: docs/serving.md. Query parameters: token, autostart=1, raw=1 (no echo cancellation / noise
// suppression / gain control), jitter_ms (playback buffer before an answer starts, default 150).
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const JITTER_S = Math.max(0, Number(params.get("jitter_ms") || 150)) / 1000;
const RAW = params.get("raw") === "1";
const MAX_BUFFERED = 64000; // bytes the socket has not sent yet; beyond it microphone frames are dropped

// Everything the page knows, also read by the browser test.
const ui = {
  state: "disconnected", ready: null, closed: null, decisions: [], errors: [], answers: {},
  audioFrames: 0, audioBytes: 0, micFrames: 0, micDropped: 0, micError: null,
};
window.omnikit = ui;

let ws = null;
let ctx = null;
let mic = null;
let out = null; // playback gain (ducked while the user talks over an answer)
let outRate = 16000;
let playHead = 0;
let sources = new Set();
let current = null; // the answer whose PCM is arriving
let decisionAt = null; // performance.now() of the last respond decision

function log(text, cls) {
  const line = document.createElement("div");
  line.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  if (cls) line.className = cls;
  $("log").prepend(line);
}

function setState(state) {
  ui.state = state;
  $("state").textContent = state.replace("_", " + ");
  $("state").className = state;
  if (out) out.gain.setTargetAtTime(state === "speaking_hearing" ? 0.3 : 1.0, ctx.currentTime, 0.02);
}

function row(id) {
  let tr = document.getElementById(`turn-${id}`);
  if (!tr) {
    tr = document.createElement("tr");
    tr.id = `turn-${id}`;
    tr.innerHTML = '<td></td><td></td><td class="num"></td><td class="num"></td><td class="num"></td><td></td>';
    tr.cells[0].textContent = id;
    $("turns").prepend(tr);
  }
  return tr;
}

const ms = (v) => (v === null || v === undefined ? "-" : `${Math.round(v)} ms`);

// ---------------------------------------------------------------- playback
function flush() {
  for (const s of sources) {
    try { s.stop(); } catch (e) { /* not started yet */ }
  }
  sources.clear();
  playHead = 0;
}

function play(buffer) {
  const pcm = new Int16Array(buffer);
  if (!pcm.length || !ctx) return;
  const f = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) f[i] = pcm[i] / 32768;
  const b = ctx.createBuffer(1, f.length, outRate);
  b.copyToChannel(f, 0);
  const s = ctx.createBufferSource();
  s.buffer = b;
  s.connect(out);
  const now = ctx.currentTime;
  if (playHead < now + 0.01) playHead = now + JITTER_S; // start (or underrun): buffer a little first
  s.start(playHead);
  const a = ui.answers[current];
  if (a && a.playedMs === null && decisionAt !== null) {
    a.playedMs = performance.now() + (playHead - now) * 1000 - decisionAt;
    row(current).cells[4].textContent = ms(a.playedMs);
  }
  playHead += b.duration;
  sources.add(s);
  s.onended = () => sources.delete(s);
}

// ---------------------------------------------------------------- microphone
async function startMic() {
  try {
    mic = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: !RAW, noiseSuppression: !RAW, autoGainControl: !RAW },
    });
    await ctx.audioWorklet.addModule("/static/capture-worklet.js");
    const src = ctx.createMediaStreamSource(mic);
    const node = new AudioWorkletNode(ctx, "pcm-capture", { numberOfOutputs: 1, outputChannelCount: [1] });
    node.port.onmessage = (e) => {
      $("meter").firstElementChild.style.width = `${Math.min(100, e.data.level * 300)}%`;
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      if (ws.bufferedAmount > MAX_BUFFERED) { ui.micDropped++; return; } // the network is behind: drop, stay live
      ws.send(e.data.pcm);
      ui.micFrames++;
    };
    const mute = ctx.createGain(); // keeps the worklet pulled by the graph without playing the microphone
    mute.gain.value = 0;
    src.connect(node).connect(mute).connect(ctx.destination);
    log(`microphone on (${ctx.sampleRate} Hz -> 16 kHz)`);
  } catch (err) {
    ui.micError = String(err);
    log(`microphone unavailable (${err}); you can still type a question`, "err");
  }
}

function stopMic() {
  if (mic) for (const t of mic.getTracks()) t.stop();
  mic = null;
}

// ---------------------------------------------------------------- protocol
function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

function onEvent(m) {
  switch (m.type) {
    case "ready":
      ui.ready = m;
      outRate = m.output.sample_rate;
      send({ type: "start" });
      break;
    case "started":
      $("question").disabled = $("send").disabled = $("interrupt").disabled = false;
      startMic();
      break;
    case "state":
      setState(m.state);
      break;
    case "speech_start":
      log(`speech at ${m.t.toFixed(2)} s`);
      break;
    case "decision":
      ui.decisions.push(m);
      log(`decision: ${m.decision} (${m.reason}) at ${m.t.toFixed(2)} s`);
      if (m.decision === "respond") decisionAt = performance.now();
      break;
    case "answer_start":
      current = m.answer;
      ui.answers[m.answer] = { text: "", playedMs: null, end: null };
      $("answer").textContent = "";
      row(m.answer);
      break;
    case "text": {
      const a = ui.answers[m.answer];
      if (a) a.text += m.delta;
      $("answer").textContent += m.delta;
      row(m.answer).cells[1].textContent = a ? a.text : "";
      break;
    }
    case "interrupt":
      if (m.answer === current) flush();
      if (ui.answers[m.answer]) ui.answers[m.answer].end = "interrupted";
      row(m.answer).cells[5].textContent = `interrupted (${m.reason})`;
      log(`answer ${m.answer} interrupted (${m.reason})`);
      break;
    case "answer_end":
      if (ui.answers[m.answer]) ui.answers[m.answer].end = "done";
      row(m.answer).cells[5].textContent = `${m.audio_s.toFixed(1)} s of speech`;
      break;
    case "latency": {
      const tr = row(m.answer);
      tr.cells[2].textContent = ms(m.speech_end_to_decision_ms);
      tr.cells[3].textContent = ms(m.decision_to_first_audio_sent_ms);
      if (ui.answers[m.answer]) ui.answers[m.answer].latency = m;
      break;
    }
    case "error":
      ui.errors.push(m);
      log(`error ${m.code}: ${m.message}`, "err");
      break;
    case "bye":
      log("session ended");
      break;
    default:
      log(`unknown event ${m.type}`);
  }
}

async function connect() {
  if (ws) return;
  ctx = ctx || new AudioContext();
  await ctx.resume();
  if (!out) {
    out = ctx.createGain();
    out.connect(ctx.destination);
  }
  const token = $("token").value || params.get("token") || "";
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws${token ? `?token=${encodeURIComponent(token)}` : ""}`);
  ws.binaryType = "arraybuffer";
  ui.closed = null;
  $("connect").disabled = true;
  $("hangup").disabled = false;
  $("status").textContent = "connecting";
  ws.onmessage = (e) => {
    if (typeof e.data === "string") {
      onEvent(JSON.parse(e.data));
    } else {
      ui.audioFrames++;
      ui.audioBytes += e.data.byteLength;
      play(e.data);
    }
  };
  ws.onopen = () => { $("status").textContent = "connected"; };
  ws.onclose = (e) => {
    ui.closed = { code: e.code, reason: e.reason };
    $("status").textContent = `closed (${e.code}${e.reason ? `: ${e.reason}` : ""})`;
    log(`connection closed: ${e.code} ${e.reason}`, e.code === 1000 ? "" : "err");
    ws = null;
    stopMic();
    flush();
    setState("disconnected");
    $("connect").disabled = false;
    $("hangup").disabled = $("interrupt").disabled = $("question").disabled = $("send").disabled = true;
  };
}

$("connect").onclick = () => connect().catch((err) => log(String(err), "err"));
$("hangup").onclick = () => ws && ws.close(1000, "hang up");
$("interrupt").onclick = () => { send({ type: "interrupt" }); flush(); };
$("ask").onsubmit = (e) => {
  e.preventDefault();
  const q = $("question").value.trim();
  if (!q) return;
  send({ type: "text", text: q });
  log(`asked: ${q}`);
  $("question").value = "";
};
if (params.get("token")) $("token").value = params.get("token");
if (params.get("autostart") === "1") connect().catch((err) => log(String(err), "err"));
