// Disgust's ink-blot test: each plate is a new blot drawn from a random seed (metaballs with a
// little value noise), computed for the left half and mirrored, so it is exactly symmetric.
"use strict";
(function () {
  const { t, post } = window.Activities;
  const config = JSON.parse(document.getElementById("rorschach-data").textContent);
  const box = document.getElementById("rorschach");
  const canvas = document.getElementById("blot");
  const answer = document.getElementById("blot-answer");
  const nextButton = document.getElementById("blot-next");
  const errorBox = document.getElementById("rorschach-error");
  const INKS = [[24, 22, 38], [24, 22, 38], [24, 22, 38], [120, 20, 40], [30, 40, 110]];
  let answers = [];

  function mulberry32(seed) {
    return function () {
      seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
      let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
      return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
    };
  }

  function valueNoise(random, cells) {
    const grid = Array.from({ length: (cells + 1) * (cells + 1) }, random);
    const smooth = (v) => v * v * (3 - 2 * v);
    return (u, v) => {
      const x = u * cells, y = v * cells;
      const x0 = Math.floor(x), y0 = Math.floor(y);
      const fx = smooth(x - x0), fy = smooth(y - y0);
      const at = (i, j) => grid[Math.min(j, cells) * (cells + 1) + Math.min(i, cells)];
      const top = at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx;
      const bottom = at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx;
      return top * (1 - fy) + bottom * fy;
    };
  }

  function drawBlot(seed) {
    const random = mulberry32(seed);
    const size = canvas.width;
    const half = size / 2;
    const balls = [];
    const add = (count, xFrom, xTo, rFrom, rTo) => {
      for (let i = 0; i < count; i++) {
        balls.push({
          x: size * (xFrom + random() * (xTo - xFrom)),
          y: size * (0.12 + random() * 0.76),
          r: size * (rFrom + random() * (rTo - rFrom)),
        });
      }
    };
    add(2 + Math.floor(random() * 3), 0.4, 0.5, 0.05, 0.1);  // the body on the fold
    add(4 + Math.floor(random() * 6), 0.14, 0.44, 0.03, 0.08);  // wings
    add(4 + Math.floor(random() * 6), 0.05, 0.45, 0.008, 0.02);  // splashes
    const coarse = [valueNoise(random, 5), valueNoise(random, 5)];
    const fine = valueNoise(random, 18);
    const ink = INKS[Math.floor(random() * INKS.length)];
    const g = canvas.getContext("2d");
    const image = g.createImageData(size, size);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < half; x++) {
        // Warping where the field is sampled makes ragged, organic edges out of round blobs.
        const u = x / size, v = y / size;
        const wx = x + (coarse[0](u, v) - 0.5) * size * 0.12 + (fine(u, v) - 0.5) * size * 0.03;
        const wy = y + (coarse[1](u, v) - 0.5) * size * 0.12 + (fine(v, u) - 0.5) * size * 0.03;
        let field = 0;
        for (const b of balls) field += Math.exp(-((wx - b.x) ** 2 + (wy - b.y) ** 2) / (2 * b.r * b.r));
        const a = Math.max(0, Math.min(1, (field - 0.45) / 0.08));
        const shade = 0.9 + 0.2 * fine(u, 1 - v);  // ink pools unevenly
        for (const px of [x, size - 1 - x]) {
          const i = (y * size + px) * 4;
          image.data[i] = Math.round(251 * (1 - a) + ink[0] * shade * a);
          image.data[i + 1] = Math.round(247 * (1 - a) + ink[1] * shade * a);
          image.data[i + 2] = Math.round(238 * (1 - a) + ink[2] * shade * a);
          image.data[i + 3] = 255;
        }
      }
    }
    g.putImageData(image, 0, 0);
    canvas.dataset.seed = String(seed);
  }

  function newSeed() {
    const values = new Uint32Array(1);
    crypto.getRandomValues(values);
    return values[0];
  }

  function showPlate() {
    const n = answers.length + 1;
    document.getElementById("plate-count").textContent = t("plateOf", { n, total: config.plates });
    nextButton.textContent = n === config.plates ? t("seeSummary") : t("nextPlate");
    answer.value = "";
    drawBlot(newSeed());
    if (answers.length) answer.focus();
  }

  async function next() {
    answers.push(answer.value.trim().slice(0, config.max_chars));
    if (answers.length < config.plates) { showPlate(); return; }
    nextButton.disabled = true;
    box.dataset.state = "summarising";
    const { ok, data } = await post(box.dataset.summaryUrl, { answers }, true);
    nextButton.disabled = false;
    if (!ok) {
      errorBox.textContent = data.detail;
      errorBox.hidden = false;
      answers.pop();
      box.dataset.state = "plates";
      return;
    }
    errorBox.hidden = true;
    document.getElementById("plates").hidden = true;
    document.getElementById("summary-lines").replaceChildren(
      ...data.lines.map((line) => Object.assign(document.createElement("li"), { textContent: line })),
    );
    document.getElementById("summary-answers").replaceChildren(
      ...data.answers.map((a) => Object.assign(document.createElement("li"), { textContent: a.text || "—" })),
    );
    document.getElementById("rorschach-summary").hidden = false;
    box.dataset.state = "summary";
    document.getElementById("summary-title").focus();
  }

  function restart() {
    answers = [];
    document.getElementById("rorschach-summary").hidden = true;
    document.getElementById("plates").hidden = false;
    box.dataset.state = "plates";
    showPlate();
  }

  nextButton.addEventListener("click", next);
  answer.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); next(); }
  });
  document.getElementById("blot-new").addEventListener("click", restart);
  showPlate();
})();
