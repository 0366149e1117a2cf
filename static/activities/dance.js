// Joy's dance challenge: a 30-second round at 120 bpm. Movements come from the camera (a jump in
// frame-to-frame difference) or from Space/Enter/taps; the server scores the round for the card.
"use strict";
(function () {
  const { t, post, sound } = window.Activities;
  const rules = JSON.parse(document.getElementById("dance-data").textContent);
  const box = document.getElementById("dance");
  const stage = document.getElementById("dance-stage");
  const moveLabel = document.getElementById("move-label");
  const timeLeft = document.getElementById("time-left");
  const liveScore = document.getElementById("live-score");
  const feedback = document.getElementById("feedback");
  const startButton = document.getElementById("dance-start");
  const tapButton = document.getElementById("tap");
  const video = document.getElementById("dance-camera");
  const COUNT_IN_MS = 3000;
  let events = [];
  let roundStart = 0;
  let ticker = null;
  let lastBeat = -1;
  let result = null;

  // The same rules as activities/dance.py:dance_score, for live feedback; the server's answer is
  // the one on the score card.
  function danceScore(times) {
    const beats = [];
    for (let b = rules.beat_ms; b < rules.round_ms; b += rules.beat_ms) beats.push(b);
    const best = new Map();
    let strays = 0;
    for (const event of [...times].sort((a, b) => a - b)) {
      if (!(event >= 0 && event <= rules.round_ms)) continue;
      const beat = Math.round(event / rules.beat_ms) * rules.beat_ms;
      const offset = Math.abs(event - beat);
      if (!beats.includes(beat) || offset > rules.good_ms) strays++;
      else if (best.has(beat)) { strays++; best.set(beat, Math.min(best.get(beat), offset)); }
      else best.set(beat, offset);
    }
    let score = 0, perfect = 0, good = 0, combo = 0, bestCombo = 0;
    for (const beat of beats) {
      if (!best.has(beat)) { combo = 0; continue; }
      combo++;
      bestCombo = Math.max(bestCombo, combo);
      const base = best.get(beat) <= rules.perfect_ms ? rules.perfect_points : rules.good_points;
      if (base === rules.perfect_points) perfect++; else good++;
      score += base + Math.floor((base * Math.min(combo - 1, rules.max_combo_bonus)) / 10);
    }
    return { score: Math.max(0, score - rules.stray_penalty * strays), perfect, good, strays, best_combo: bestCombo };
  }

  function elapsed() { return performance.now() - roundStart; }

  function moved() {
    if (box.dataset.state !== "dancing") return;
    const at = elapsed();
    if (at < 0 || at > rules.round_ms) return;
    events.push(Math.round(at));
    const offset = Math.abs(at - Math.round(at / rules.beat_ms) * rules.beat_ms);
    feedback.textContent = offset <= rules.perfect_ms ? t("perfect") : offset <= rules.good_ms ? t("good") : t("offBeat");
    liveScore.textContent = danceScore(events).score;
  }

  function tick() {
    const at = elapsed();
    if (at < 0) {
      box.dataset.state = "countdown";
      moveLabel.textContent = `${t("getReady")} ${Math.ceil(-at / 1000)}`;
      return;
    }
    if (box.dataset.state === "countdown") box.dataset.state = "dancing";
    if (at >= rules.round_ms) { finish(); return; }
    let step = rules.steps[0];
    for (const candidate of rules.steps) if (candidate.at_ms <= at) step = candidate;
    if (stage.dataset.move !== step.move) {
      stage.dataset.move = step.move;
      moveLabel.textContent = step.label;
    }
    const beat = Math.floor(at / rules.beat_ms);
    if (beat !== lastBeat) {
      lastBeat = beat;
      stage.classList.toggle("beat-odd", beat % 2 === 1);
    }
    timeLeft.textContent = t("secondsLeft", { s: Math.ceil((rules.round_ms - at) / 1000) });
  }

  function begin() {
    events = [];
    lastBeat = -1;
    result = null;
    liveScore.textContent = "0";
    feedback.textContent = "";
    document.getElementById("dance-result").hidden = true;
    startButton.disabled = true;
    tapButton.disabled = false;
    sound.restart();
    roundStart = performance.now() + COUNT_IN_MS;
    box.dataset.state = "countdown";
    tick();
    ticker = setInterval(tick, 50);
    tapButton.focus();
  }

  async function finish() {
    clearInterval(ticker);
    box.dataset.state = "scoring";
    stage.dataset.move = "";
    moveLabel.textContent = "";
    timeLeft.textContent = t("secondsLeft", { s: 0 });
    tapButton.disabled = true;
    const answer = await post(box.dataset.scoreUrl, { events_ms: events }, true);
    startButton.disabled = false;
    if (!answer.ok) {
      feedback.textContent = answer.data.detail;
      box.dataset.state = "idle";
      return;
    }
    result = answer.data;
    showResult(result);
    box.dataset.state = "done";
  }

  function showResult(data) {
    document.getElementById("final-score").textContent = `${data.score}`;
    document.getElementById("saved-note").textContent = data.saved ? t("saved") : t("notSaved");
    liveScore.textContent = data.score;
    if (data.saved) {
      const list = document.getElementById("best-scores");
      list.replaceChildren(...data.best.map((score) => Object.assign(document.createElement("li"), { textContent: score })));
    }
    drawCard(data);
    const resultBox = document.getElementById("dance-result");
    resultBox.hidden = false;
    document.getElementById("share-card").hidden = !navigator.share;
    document.getElementById("dance-result-title").focus();
  }

  function drawCard(data) {
    const canvas = document.getElementById("score-card");
    const g = canvas.getContext("2d");
    const gradient = g.createLinearGradient(0, 0, canvas.width, canvas.height);
    gradient.addColorStop(0, "#ffe27a");
    gradient.addColorStop(1, "#ff9d4d");
    g.fillStyle = gradient;
    g.fillRect(0, 0, canvas.width, canvas.height);
    g.fillStyle = "rgba(255,255,255,.35)";
    for (let i = 0; i < 14; i++) {
      const angle = (i / 14) * Math.PI * 2;
      g.beginPath();
      g.moveTo(520, 110);
      g.arc(520, 110, 260, angle, angle + 0.12);
      g.fill();
    }
    g.fillStyle = "#f7c531";
    g.beginPath();
    g.arc(520, 110, 60, 0, Math.PI * 2);
    g.fill();
    g.fillStyle = "#3b2a00";
    g.beginPath();
    g.arc(520, 122, 26, 0, Math.PI);
    g.fill();
    g.textBaseline = "top";
    g.font = "700 30px system-ui, sans-serif";
    g.fillText(t("scoreTitle"), 36, 36);
    g.font = "800 120px system-ui, sans-serif";
    g.fillText(String(data.score), 36, 110);
    g.font = "500 24px system-ui, sans-serif";
    g.fillText(t("scoreLine", { perfect: data.perfect, good: data.good, combo: data.best_combo }), 36, 270);
    g.font = "400 18px system-ui, sans-serif";
    g.fillText(`${new Date().toLocaleDateString(document.documentElement.lang)} · facelabel`, 36, 350);
  }

  function cardBlob() {
    return new Promise((resolve) => document.getElementById("score-card").toBlob(resolve, "image/png"));
  }

  document.getElementById("download-card").addEventListener("click", async () => {
    const url = URL.createObjectURL(await cardBlob());
    const link = Object.assign(document.createElement("a"), { href: url, download: "joy-dance-score.png" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });

  document.getElementById("share-card").addEventListener("click", async () => {
    const file = new File([await cardBlob()], "joy-dance-score.png", { type: "image/png" });
    const text = t("scoreShare", { score: result ? result.score : 0 });
    try {
      if (navigator.canShare && navigator.canShare({ files: [file] })) await navigator.share({ files: [file], text });
      else await navigator.share({ text, url: location.href });
    } catch (error) { /* the visitor closed the share sheet */ }
  });

  document.getElementById("dance-again").addEventListener("click", begin);
  startButton.addEventListener("click", begin);
  tapButton.addEventListener("pointerdown", (event) => { event.preventDefault(); moved(); });
  document.addEventListener("keydown", (event) => {
    if (box.dataset.state !== "dancing" && box.dataset.state !== "countdown") return;
    if (event.key === " " || event.key === "Enter") {
      event.preventDefault();  // a focused button must not also "click"
      moved();
    }
  });

  // Movement from the camera: the mean difference between two small grey frames. A sudden rise
  // above the recent level is one movement; holding still or moving smoothly is not.
  function motionDetector() {
    let previous = null;
    let baseline = 0.02;
    let above = false;
    let lastEvent = -Infinity;
    // grey: Float32Array of 0..1 levels; now: ms. True when this frame starts a movement.
    return function frame(grey, now) {
      let started = false;
      if (previous) {
        let sum = 0;
        for (let i = 0; i < grey.length; i++) sum += Math.abs(grey[i] - previous[i]);
        const energy = sum / grey.length;
        const threshold = Math.max(0.03, baseline * 2.5);
        if (!above && energy > threshold && now - lastEvent > 200) {
          above = true;
          started = true;
          lastEvent = now;
        } else if (above && energy < threshold * 0.7) {
          above = false;
        }
        if (!above) baseline = baseline * 0.95 + energy * 0.05;
      }
      previous = grey;
      return started;
    };
  }

  async function startCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 320 } }, audio: false });
      await video.play();
    } catch (error) {
      return;
    }
    video.hidden = false;
    document.getElementById("dance-input").textContent = document.getElementById("dance-input").dataset.camera || "";
    const canvas = document.createElement("canvas");
    canvas.width = 64;
    canvas.height = 48;
    const g = canvas.getContext("2d", { willReadFrequently: true });
    const detect = motionDetector();
    setInterval(() => {
      if (video.readyState < 2) return;
      g.drawImage(video, 0, 0, 64, 48);
      const pixels = g.getImageData(0, 0, 64, 48).data;
      const grey = new Float32Array(64 * 48);
      for (let i = 0; i < grey.length; i++) grey[i] = (pixels[i * 4] + pixels[i * 4 + 1] + pixels[i * 4 + 2]) / 765;
      if (detect(grey, performance.now())) moved();
    }, 40);
  }
  startCamera();
  // Let the browser tests compare this copy with the server's and feed the detector frames.
  window.danceScore = danceScore;
  window.danceMotionDetector = motionDetector;
})();
