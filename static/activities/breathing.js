// Anger's breathing session: inhale 4 s, hold 2 s, exhale 4 s for three minutes, with a growing
// and shrinking guide and red sparks drifting on a canvas behind it. Time is counted from
// performance.now(), so a throttled tab (or a test's fast-forwarded clock) lands in the right phase.
"use strict";
(function () {
  const { t, sound } = window.Activities;
  const PHASES = [["inhale", 4000], ["hold", 2000], ["exhale", 4000]];
  const CYCLE_MS = PHASES.reduce((sum, [, ms]) => sum + ms, 0);
  const TOTAL_MS = 18 * CYCLE_MS;  // 3 minutes
  const box = document.getElementById("breathing");
  const guide = document.getElementById("breath-guide");
  const phaseText = document.getElementById("breath-phase");
  const countText = document.getElementById("breath-count");
  const progress = document.getElementById("breath-progress");
  const timeText = document.getElementById("breath-time");
  const startButton = document.getElementById("breath-start");
  const pauseButton = document.getElementById("breath-pause");
  const stopButton = document.getElementById("breath-stop");
  const done = document.getElementById("breath-done");
  const reduced = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  progress.max = TOTAL_MS / 1000;
  let banked = 0;
  let resumedAt = null;
  let lastPhase = null;
  let ticker = null;

  function elapsed() { return banked + (resumedAt === null ? 0 : performance.now() - resumedAt); }

  function phaseAt(ms) {
    let within = ms % CYCLE_MS;
    for (const [name, length] of PHASES) {
      if (within < length) return { name, length, within };
      within -= length;
    }
    return { name: "exhale", length: 4000, within: 4000 };
  }

  function render() {
    const ms = Math.min(elapsed(), TOTAL_MS);
    const phase = phaseAt(ms);
    const p = phase.within / phase.length;
    const scale = phase.name === "inhale" ? 0.55 + 0.45 * p : phase.name === "hold" ? 1 : 1 - 0.45 * p;
    guide.style.transform = `scale(${scale.toFixed(3)})`;
    guide.dataset.phase = phase.name;
    if (phase.name !== lastPhase) {
      lastPhase = phase.name;
      phaseText.textContent = t(phase.name);
      sound.call("breath", phase.name, phase.length / 1000);
    }
    countText.textContent = String(Math.ceil((phase.length - phase.within) / 1000));
    progress.value = ms / 1000;
    const left = Math.ceil((TOTAL_MS - ms) / 1000);
    timeText.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    if (ms >= TOTAL_MS) finish(false);
  }

  function start() {
    banked = 0;
    lastPhase = null;
    resumedAt = performance.now();
    box.dataset.state = "running";
    done.hidden = true;
    startButton.disabled = true;
    pauseButton.disabled = false;
    stopButton.disabled = false;
    pauseButton.textContent = t("pause");
    clearInterval(ticker);
    ticker = setInterval(render, 100);
    render();
  }

  function togglePause() {
    if (resumedAt === null) {
      resumedAt = performance.now();
      box.dataset.state = "running";
      pauseButton.textContent = t("pause");
      lastPhase = null;
    } else {
      banked = elapsed();
      resumedAt = null;
      box.dataset.state = "paused";
      pauseButton.textContent = t("resume");
      phaseText.textContent = t("resume") + "?";
    }
  }

  function finish(stopped) {
    if (box.dataset.state === "done" || box.dataset.state === "stopped") return;
    clearInterval(ticker);
    banked = elapsed();
    resumedAt = null;
    box.dataset.state = stopped ? "stopped" : "done";
    startButton.disabled = false;
    pauseButton.disabled = true;
    stopButton.disabled = true;
    document.getElementById("breath-stopped").hidden = !stopped;
    done.hidden = false;
    document.getElementById("breath-done-title").focus();
  }

  startButton.addEventListener("click", start);
  document.getElementById("breath-again").addEventListener("click", start);
  pauseButton.addEventListener("click", togglePause);
  stopButton.addEventListener("click", () => finish(true));

  // The sparks: slow, warm, always there; fewer and slower for people who ask for less motion.
  const canvas = document.getElementById("particles");
  const g = canvas.getContext("2d");
  const sparks = Array.from({ length: reduced ? 18 : 60 }, () => spark(true));
  let lastFrame = performance.now();

  function spark(anywhere) {
    return {
      x: Math.random(), y: anywhere ? Math.random() : 1.05, r: 2 + Math.random() * 5,
      speed: (reduced ? 0.004 : 0.012) + Math.random() * 0.02, sway: Math.random() * Math.PI * 2,
      hue: 0 + Math.random() * 25, alpha: 0.25 + Math.random() * 0.5,
    };
  }

  function frame(now) {
    const dt = Math.min((now - lastFrame) / 1000, 0.1);
    lastFrame = now;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
    g.clearRect(0, 0, width, height);
    for (let i = 0; i < sparks.length; i++) {
      const s = sparks[i];
      s.y -= s.speed * dt;
      s.sway += dt * 0.8;
      if (s.y < -0.05) sparks[i] = spark(false);
      g.beginPath();
      g.fillStyle = `hsla(${s.hue}, 85%, 55%, ${s.alpha})`;
      g.arc((s.x + Math.sin(s.sway) * 0.02) * width, s.y * height, s.r, 0, Math.PI * 2);
      g.fill();
    }
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);
})();
