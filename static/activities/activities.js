// Shared by every activity page: translated strings, requests with the CSRF token, and the
// per-emotion soundscapes generated with Web Audio (no audio files).
"use strict";
window.Activities = (function () {
  const stringsNode = document.getElementById("activity-strings");
  const strings = stringsNode ? JSON.parse(stringsNode.textContent) : {};

  function t(key, values) {
    let text = strings[key] || key;
    for (const [name, value] of Object.entries(values || {})) text = text.split(`%(${name})s`).join(String(value));
    return text;
  }

  function csrfToken() {
    const input = document.querySelector("[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // Resolves to {ok, status, data}; a non-JSON answer (Django's HTML 403 for a missing CSRF
  // token, a proxy's 502) gets a message of ours instead.
  async function post(url, body, isJson) {
    const headers = { "X-CSRFToken": csrfToken() };
    if (isJson) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url, { method: "POST", body: isJson ? JSON.stringify(body) : body, headers, credentials: "same-origin" });
    } catch (error) {
      return { ok: false, status: 0, data: { detail: t("failed") } };
    }
    let data = null;
    try { data = await response.json(); } catch (error) { data = null; }
    if (!data) {
      const detail = response.status === 403 ? t("csrf") : response.status === 413 ? t("tooLarge") : t("failed");
      data = { detail };
    }
    return { ok: response.ok, status: response.status, data };
  }

  // ---- sound ----------------------------------------------------------------------------
  const MUTE_KEY = "facelabel.activities.muted";
  const sound = {
    ctx: null, master: null, emotion: null, timers: [], nodes: [], hooks: {},
    muted() { try { return localStorage.getItem(MUTE_KEY) === "1"; } catch (e) { return false; } },
    init(emotion) {
      this.emotion = emotion;
      const button = document.getElementById("mute");
      if (button) {
        this.paint(button);
        button.addEventListener("click", () => {
          const muted = !this.muted();
          try { localStorage.setItem(MUTE_KEY, muted ? "1" : "0"); } catch (e) { /* private mode: not remembered */ }
          this.paint(button);
          if (muted) this.stop(); else this.start();
        });
      }
      // Browsers only let a page make sound after the visitor has interacted with it.
      const firstGesture = () => {
        document.removeEventListener("pointerdown", firstGesture);
        document.removeEventListener("keydown", firstGesture);
        if (!this.muted()) this.start();
      };
      document.addEventListener("pointerdown", firstGesture);
      document.addEventListener("keydown", firstGesture);
    },
    paint(button) {
      const muted = this.muted();
      button.setAttribute("aria-pressed", muted ? "true" : "false");
      button.textContent = muted ? t("soundOff") : t("soundOn");
    },
    start() {
      if (this.master || this.muted()) return;
      const AudioContextClass = window.AudioContext || window.webkitAudioContext;
      if (!AudioContextClass) return;
      if (!this.ctx) this.ctx = new AudioContextClass();
      this.ctx.resume();
      this.master = this.ctx.createGain();
      this.master.gain.setValueAtTime(0, this.ctx.currentTime);
      this.master.gain.linearRampToValueAtTime(0.5, this.ctx.currentTime + 1.5);
      this.master.connect(this.ctx.destination);
      this.echo = makeEcho(this.ctx, this.master);
      (SCAPES[this.emotion] || SCAPES.neutral)(this);
    },
    stop() {
      this.timers.forEach(clearInterval);
      this.timers = [];
      this.nodes.forEach((node) => { try { node.stop(); } catch (e) { /* already stopped */ } });
      this.nodes = [];
      this.hooks = {};
      if (this.master) this.master.disconnect();
      this.master = null;
    },
    // Lets a page ask for a fresh start, e.g. the dance round, whose beat must begin with the round.
    restart() { this.stop(); this.start(); },
    // A scheduler that plans notes a little ahead on the audio clock, so timers firing late do
    // not make the rhythm stumble.
    every(seconds, play) {
      let next = this.ctx.currentTime + 0.1;
      let step = 0;
      const tick = () => {
        while (next < this.ctx.currentTime + 0.25) { play(next, step++); next += seconds; }
      };
      tick();
      this.timers.push(setInterval(tick, 60));
    },
    hook(name, fn) { this.hooks[name] = fn; },
    call(name, ...args) { if (this.hooks[name]) this.hooks[name](...args); },
  };

  function makeEcho(ctx, out) {
    const delay = ctx.createDelay(1.0);
    const feedback = ctx.createGain();
    const tone = ctx.createBiquadFilter();
    delay.delayTime.value = 0.33;
    feedback.gain.value = 0.35;
    tone.type = "lowpass";
    tone.frequency.value = 1800;
    delay.connect(tone).connect(feedback).connect(delay);
    tone.connect(out);
    return delay;
  }

  function note(s, when, freq, opts) {
    const o = Object.assign({ type: "sine", attack: 0.01, decay: 0.6, gain: 0.2, echo: 0 }, opts);
    const osc = s.ctx.createOscillator();
    const amp = s.ctx.createGain();
    osc.type = o.type;
    osc.frequency.setValueAtTime(freq, when);
    if (o.slideTo) osc.frequency.exponentialRampToValueAtTime(o.slideTo, when + o.decay);
    amp.gain.setValueAtTime(0.0001, when);
    amp.gain.exponentialRampToValueAtTime(o.gain, when + o.attack);
    amp.gain.exponentialRampToValueAtTime(0.0001, when + o.attack + o.decay);
    osc.connect(amp).connect(o.filter || s.master);
    if (o.echo) { const send = s.ctx.createGain(); send.gain.value = o.echo; amp.connect(send).connect(s.echo); }
    osc.start(when);
    osc.stop(when + o.attack + o.decay + 0.05);
  }

  function noise(s, when, duration, gain, highpass) {
    const length = Math.floor(s.ctx.sampleRate * duration);
    const buffer = s.ctx.createBuffer(1, length, s.ctx.sampleRate);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < length; i++) data[i] = (Math.random() * 2 - 1) * (1 - i / length);
    const source = s.ctx.createBufferSource();
    const filter = s.ctx.createBiquadFilter();
    const amp = s.ctx.createGain();
    source.buffer = buffer;
    filter.type = "highpass";
    filter.frequency.value = highpass;
    amp.gain.value = gain;
    source.connect(filter).connect(amp).connect(s.master);
    source.start(when);
  }

  function drone(s, freqs, type, cutoff, gain) {
    const filter = s.ctx.createBiquadFilter();
    filter.type = "lowpass";
    filter.frequency.value = cutoff;
    const amp = s.ctx.createGain();
    amp.gain.value = gain;
    filter.connect(amp).connect(s.master);
    for (const f of freqs) {
      const osc = s.ctx.createOscillator();
      osc.type = type;
      osc.frequency.value = f;
      osc.connect(filter);
      osc.start();
      s.nodes.push(osc);
    }
    return filter;
  }

  const hz = (midi) => 440 * Math.pow(2, (midi - 69) / 12);

  // One soundscape per emotion.
  const SCAPES = {
    // Joy: 120 bpm, a kick on every beat, hats between, a bouncy major bass line.
    happy(s) {
      const bass = [48, 52, 55, 57, 53, 57, 55, 52];
      s.every(0.25, (when, step) => {
        if (step % 2 === 0) {
          note(s, when, 150, { slideTo: 45, decay: 0.25, gain: 0.6 });
          note(s, when, hz(bass[(step / 2) % bass.length]), { type: "triangle", decay: 0.35, gain: 0.22 });
        } else {
          noise(s, when, 0.05, 0.12, 7000);
        }
        if (step % 8 === 4) [60, 64, 67].forEach((m) => note(s, when, hz(m + 12), { type: "square", decay: 0.15, gain: 0.04 }));
      });
    },
    // Sadness: slow, warm minor chords with a few soft high notes.
    sad(s) {
      const chords = [[57, 60, 64], [53, 57, 60], [48, 52, 55], [55, 59, 62]];
      s.every(4, (when, step) => chords[step % 4].forEach((m) => note(s, when, hz(m), { attack: 1.2, decay: 3.2, gain: 0.06, echo: 0.4 })));
      s.every(1.5, (when) => {
        if (Math.random() < 0.5) note(s, when, hz([69, 72, 76, 79][Math.floor(Math.random() * 4)]), { decay: 1.6, gain: 0.05, echo: 0.5 });
      });
    },
    // Anger: a low drone whose filter opens on the in-breath and closes on the out-breath.
    angry(s) {
      const filter = drone(s, [55, 55.4, 82.5], "sawtooth", 220, 0.09);
      s.hook("breath", (phase, seconds) => {
        const now = s.ctx.currentTime;
        const target = phase === "inhale" ? 900 : phase === "hold" ? filter.frequency.value : 200;
        filter.frequency.cancelScheduledValues(now);
        filter.frequency.setValueAtTime(filter.frequency.value, now);
        filter.frequency.linearRampToValueAtTime(target, now + seconds);
      });
      s.every(10, (when) => note(s, when, hz(45), { attack: 3, decay: 6, gain: 0.05 }));
    },
    // Fear: gentle bells from a pentatonic scale over a quiet pad.
    fear(s) {
      drone(s, [hz(50), hz(57)], "sine", 600, 0.05);
      const scale = [74, 76, 79, 81, 83, 86];
      s.every(0.9, (when) => {
        if (Math.random() < 0.45) note(s, when, hz(scale[Math.floor(Math.random() * scale.length)]), { decay: 2.2, gain: 0.05, echo: 0.6 });
      });
    },
    // Disgust: a hypnotic, looping whole-tone arpeggio with a wobbling filter.
    disgust(s) {
      const filter = s.ctx.createBiquadFilter();
      filter.type = "lowpass";
      filter.frequency.value = 900;
      filter.Q.value = 6;
      filter.connect(s.master);
      const lfo = s.ctx.createOscillator();
      const depth = s.ctx.createGain();
      lfo.frequency.value = 0.15;
      depth.gain.value = 500;
      lfo.connect(depth).connect(filter.frequency);
      lfo.start();
      s.nodes.push(lfo);
      const pattern = [60, 64, 68, 70, 66, 62, 66, 70];
      s.every(0.3, (when, step) => note(s, when, hz(pattern[step % 8]), { type: "square", decay: 0.4, gain: 0.05, filter, echo: 0.3 }));
      drone(s, [hz(36), hz(42)], "triangle", 300, 0.06);
    },
    // Neutral, surprise and the start page: unhurried notes, like wind chimes.
    neutral(s) {
      const scale = [60, 62, 64, 67, 69, 72, 74];
      s.every(1.2, (when) => {
        if (Math.random() < 0.6) note(s, when, hz(scale[Math.floor(Math.random() * scale.length)]), { attack: 0.05, decay: 2.5, gain: 0.05, echo: 0.5 });
      });
    },
  };
  SCAPES.surprise = SCAPES.neutral;

  document.addEventListener("DOMContentLoaded", () => {
    const play = document.querySelector(".play");
    if (play) sound.init(play.dataset.emotion);
  });

  return { t, post, csrfToken, sound };
})();
