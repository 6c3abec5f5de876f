// omnikit microphone capture: the AudioContext's rate -> 16 kHz mono PCM16, posted in 20 ms frames (320 samples).
// Downsampling low-passes first (a windowed-sinc FIR at 7.2 kHz), then interpolates linearly at 16 kHz steps.
const OUT_RATE = 16000;
const FRAME = 320;

function lowpass(rate, cutoff, taps) {
  const h = new Float32Array(taps);
  const fc = cutoff / rate;
  const mid = (taps - 1) / 2;
  let sum = 0;
  for (let i = 0; i < taps; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
    const w = 0.54 - 0.46 * Math.cos((2 * Math.PI * i) / (taps - 1)); // Hamming
    h[i] = sinc * w;
    sum += h[i];
  }
  for (let i = 0; i < taps; i++) h[i] /= sum;
  return h;
}

class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE; // input samples per output sample
    this.fir = this.step > 1 ? lowpass(sampleRate, 7200, 63) : new Float32Array([1]);
    this.ring = new Float32Array(this.fir.length); // last inputs, for the FIR
    this.ringPos = 0;
    this.prev = 0; // previous filtered sample
    this.pos = 0; // position of the next output sample, in input samples after `prev`
    this.frame = new Int16Array(FRAME);
    this.n = 0;
    this.level = 0;
  }

  filtered(x) {
    const r = this.ring, h = this.fir, n = r.length;
    r[this.ringPos] = x;
    this.ringPos = (this.ringPos + 1) % n;
    let acc = 0;
    for (let i = 0, j = this.ringPos; i < n; i++, j = (j + 1) % n) acc += h[i] * r[j];
    return acc;
  }

  emit(v) {
    const s = Math.max(-1, Math.min(1, v));
    this.frame[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    this.level = Math.max(this.level * 0.999, Math.abs(s));
    if (this.n === FRAME) {
      this.port.postMessage({ pcm: this.frame.buffer, level: this.level }, [this.frame.buffer]);
      this.frame = new Int16Array(FRAME);
      this.n = 0;
    }
  }

  process(inputs, outputs) {
    const input = inputs[0];
    if (input && input.length) {
      const ch = input[0]; // mono: the first channel
      for (let i = 0; i < ch.length; i++) {
        const cur = this.filtered(ch[i]);
        // output samples that fall between prev (at 0) and cur (at 1)
        while (this.pos <= 1) {
          this.emit(this.prev + (cur - this.prev) * this.pos);
          this.pos += this.step;
        }
        this.pos -= 1;
        this.prev = cur;
      }
    }
    for (const out of outputs) for (const c of out) c.fill(0);
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
