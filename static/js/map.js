// The dataset map: every image as a point of a plain canvas, coloured by original label, final
// label or flag; drag a rectangle (or type its corners) to open the points in the review grid.
// A plain canvas rather than a chart library: the strict CSP serves only our own static files,
// and one fillRect per point, batched by colour, draws 100,000 points in a few tens of ms.
(function () {
  const root = document.getElementById("map");
  if (!root) return;
  const base = document.getElementById("map-canvas");
  const overlay = document.getElementById("map-overlay");
  const colourSelect = document.getElementById("map-colour");
  const legend = document.getElementById("map-legend");
  const status = document.getElementById("map-status");
  const selection = document.getElementById("map-selection");
  const form = document.getElementById("map-box-form");
  const fields = ["x0", "y0", "x1", "y1"].map((name) => document.getElementById(`box-${name}`));
  const emotionNames = root.dataset.emotionNames.split("|");
  const flagNames = root.dataset.flagNames.split("|");
  // angry, disgust, fear, happy, sad, surprise, neutral: distinct for most colour vision.
  const EMOTION_COLOURS = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#1f77b4", "#17becf", "#7f7f7f"];
  // excluded, unusable, duplicate, likely mislabeled (the server's MAP_FLAGS order).
  const FLAG_COLOURS = ["#222222", "#d62728", "#9467bd", "#ff7f0e"];
  const NONE = "#c9ced8";
  const PAD = 8;
  let points = null; // {x, y, original, final, flag} parallel arrays
  let bounds = null; // data coordinates shown: x0, y0, x1, y1
  let box = null; // the selection, in data coordinates

  function sizeCanvas(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const rect = base.getBoundingClientRect();
    canvas.width = Math.round(rect.width * ratio);
    canvas.height = Math.round(rect.height * ratio);
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    return context;
  }

  function toPixel(x, y) {
    const rect = base.getBoundingClientRect();
    const w = rect.width - 2 * PAD;
    const h = rect.height - 2 * PAD;
    return [
      PAD + ((x - bounds.x0) / (bounds.x1 - bounds.x0)) * w,
      PAD + h - ((y - bounds.y0) / (bounds.y1 - bounds.y0)) * h,
    ];
  }

  function toData(px, py) {
    const rect = base.getBoundingClientRect();
    const w = rect.width - 2 * PAD;
    const h = rect.height - 2 * PAD;
    return [
      bounds.x0 + ((px - PAD) / w) * (bounds.x1 - bounds.x0),
      bounds.y0 + ((PAD + h - py) / h) * (bounds.y1 - bounds.y0),
    ];
  }

  function palette() {
    const mode = colourSelect.value;
    const codes = points ? points[mode] : null;
    if (mode === "flag") return { codes, colours: FLAG_COLOURS, names: flagNames };
    return { codes, colours: EMOTION_COLOURS, names: emotionNames };
  }

  function draw() {
    if (!points) return;
    const context = sizeCanvas(base);
    const { codes, colours } = palette();
    const n = points.x.length;
    const rect = base.getBoundingClientRect();
    const w = rect.width - 2 * PAD;
    const h = rect.height - 2 * PAD;
    const sx = w / (bounds.x1 - bounds.x0);
    const sy = h / (bounds.y1 - bounds.y0);
    const size = n > 20000 ? 1.5 : n > 2000 ? 3 : 5;
    const half = size / 2;
    // One pass sorts the points by colour, so each colour is one batch of fillRect calls.
    const buckets = colours.map(() => []);
    const plain = [];
    for (let i = 0; i < n; i++) (codes[i] >= 0 ? buckets[codes[i]] : plain).push(i);
    context.clearRect(0, 0, rect.width, rect.height);
    // Uncoloured points first, then the colours from the last to the first: the flags' order is
    // the most telling first, so an excluded point is drawn on top.
    [plain, ...buckets.slice().reverse()].forEach((indices, k) => {
      context.fillStyle = k === 0 ? NONE : colours[colours.length - k];
      for (const i of indices) {
        const px = PAD + (points.x[i] - bounds.x0) * sx;
        const py = PAD + h - (points.y[i] - bounds.y0) * sy;
        context.fillRect(px - half, py - half, size, size);
      }
    });
    drawBox();
  }

  function drawLegend() {
    const { colours, names } = palette();
    const items = names.map((name, i) => [name, colours[i]]);
    items.push([root.dataset.noneName, NONE]);
    legend.replaceChildren(
      ...items.map(([name, colour]) => {
        const item = document.createElement("li");
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = colour;
        item.append(swatch, ` ${name}`);
        return item;
      }),
    );
  }

  function drawBox() {
    const context = sizeCanvas(overlay);
    const rect = base.getBoundingClientRect();
    context.clearRect(0, 0, rect.width, rect.height);
    if (!box || !bounds) return;
    const [ax, ay] = toPixel(box[0], box[1]);
    const [bx, by] = toPixel(box[2], box[3]);
    context.fillStyle = "rgba(58, 91, 217, 0.12)";
    context.strokeStyle = "#3a5bd9";
    context.lineWidth = 1.5;
    context.fillRect(Math.min(ax, bx), Math.min(ay, by), Math.abs(bx - ax), Math.abs(by - ay));
    context.strokeRect(Math.min(ax, bx), Math.min(ay, by), Math.abs(bx - ax), Math.abs(by - ay));
  }

  function rounded(value) {
    return Number(value.toFixed(6));
  }

  // Ordered corners: x0 <= x1, y0 <= y1 (the grid's map_box filter orders them too).
  function setBox(x0, y0, x1, y1, fromFields) {
    box = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)].map(rounded);
    if (!fromFields) box.forEach((value, i) => (fields[i].value = String(value)));
    drawBox();
    showSelection();
  }

  function showSelection() {
    if (!box || !points) return;
    let count = 0;
    for (let i = 0; i < points.x.length; i++) {
      const x = points.x[i];
      const y = points.y[i];
      if (x >= box[0] && x <= box[2] && y >= box[1] && y <= box[3]) count++;
    }
    const link = document.createElement("a");
    link.id = "map-open";
    link.href = `${root.dataset.grid}?map_box=${box.join(",")}`;
    link.textContent = root.dataset.openText.replace("{n}", count);
    link.dataset.count = count;
    selection.replaceChildren(link);
  }

  function fieldsBox() {
    const values = fields.map((field) => parseFloat(field.value));
    return values.every(Number.isFinite) ? values : null;
  }

  let dragStart = null;
  function eventPoint(event) {
    const rect = overlay.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }
  overlay.addEventListener("pointerdown", (event) => {
    if (!points) return;
    dragStart = eventPoint(event);
    overlay.setPointerCapture(event.pointerId);
  });
  overlay.addEventListener("pointermove", (event) => {
    if (!dragStart) return;
    const [ax, ay] = toData(...dragStart);
    const [bx, by] = toData(...eventPoint(event));
    setBox(ax, ay, bx, by, false);
  });
  overlay.addEventListener("pointerup", (event) => {
    if (!dragStart) return;
    const [ax, ay] = toData(...dragStart);
    const [bx, by] = toData(...eventPoint(event));
    dragStart = null;
    if (ax !== bx && ay !== by) setBox(ax, ay, bx, by, false);
  });

  fields.forEach((field) =>
    field.addEventListener("input", () => {
      const values = fieldsBox();
      if (values) setBox(...values, true);
    }),
  );
  form.addEventListener("submit", (event) => {
    // With the points here the link is made at once; without them the server counts.
    const values = fieldsBox();
    if (!points || !values) return;
    event.preventDefault();
    setBox(...values, true);
    document.getElementById("map-open").focus();
  });
  colourSelect.addEventListener("change", () => {
    drawLegend();
    draw();
  });
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(draw, 150);
  });

  function fitBounds() {
    let x0 = Infinity;
    let y0 = Infinity;
    let x1 = -Infinity;
    let y1 = -Infinity;
    for (let i = 0; i < points.x.length; i++) {
      x0 = Math.min(x0, points.x[i]);
      x1 = Math.max(x1, points.x[i]);
      y0 = Math.min(y0, points.y[i]);
      y1 = Math.max(y1, points.y[i]);
    }
    const dx = x1 - x0 || 1;
    const dy = y1 - y0 || 1;
    bounds = { x0: x0 - dx * 0.02, y0: y0 - dy * 0.02, x1: x1 + dx * 0.02, y1: y1 + dy * 0.02 };
  }

  drawLegend();
  status.textContent = root.dataset.loadingText;
  fetch(root.dataset.points, { headers: { Accept: "application/json" }, credentials: "same-origin" })
    .then((response) => {
      if (!response.ok) throw new Error(`${response.status}`);
      return response.json();
    })
    .then((data) => {
      points = data;
      fitBounds();
      draw();
      status.textContent = root.dataset.drawnText.replace("{n}", points.x.length);
      root.dataset.ready = "1";
      const values = fieldsBox();
      if (values) setBox(...values, true);
    })
    .catch((error) => {
      status.textContent = `${root.dataset.loadingText} (${error.message})`;
    });
})();
