// Review grid: accept/override one image (buttons or keyboard) and bulk actions. In the audit's
// "likely mislabeled" queue, s takes the suggested label and o keeps the original one.
// Accept (button, Enter, a) sends the final label the card shows; the server confirms exactly that
// label, or answers 409 with the label now (policy changed, image relabeled), which the card then
// shows, so a second Accept confirms what the person sees.
(function () {
  const grid = document.getElementById("grid");
  if (!grid || grid.dataset.canReview !== "1") return;
  const emotions = grid.dataset.emotions.split(",");
  const csrf = document.cookie.match(/csrftoken=([^;]+)/)?.[1] || "";
  const cards = Array.from(grid.querySelectorAll(".thumb"));

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw Object.assign(new Error(data.error || response.statusText), { data });
    return data;
  }

  function show(card, data) {
    card.dataset.final = data.final_label || "";
    card.querySelector(".final-label").textContent = data.final_label || "–";
    card.classList.toggle("reviewed", !!data.reviewed_label);
    const accept = card.querySelector(".accept");
    if (accept) accept.disabled = !data.final_label;
  }

  function problem(card, message) {
    let line = card.querySelector(".review-error");
    if (!line) {
      line = document.createElement("div");
      line.className = "review-error";
      line.setAttribute("role", "alert");
      card.querySelector("figcaption").append(line);
    }
    line.textContent = message;
    line.hidden = !message;
    card.classList.toggle("error", !!message);
  }

  async function label(card, body) {
    try {
      show(card, await post(card.dataset.url, body));
      problem(card, "");
    } catch (err) {
      if (err.data && "final_label" in err.data) show(card, err.data);
      problem(card, err.message);
    }
  }

  const accept = (card) => label(card, { accept: card.dataset.final });

  cards.forEach((card) => {
    card.querySelector(".accept")?.addEventListener("click", () => accept(card));
    card.querySelector(".take-suggestion")?.addEventListener("click", () => label(card, { label: card.dataset.suggested }));
    card.querySelector(".keep-original")?.addEventListener("click", () => label(card, { label: card.dataset.original }));
    card.querySelector(".override")?.addEventListener("change", (event) => {
      if (event.target.value) label(card, { label: event.target.value });
    });
  });

  grid.addEventListener("keydown", (event) => {
    const card = event.target.closest(".thumb");
    if (!card || event.target.tagName === "SELECT") return;
    const index = cards.indexOf(card);
    const key = event.key;
    if (key === "ArrowRight" || key === "j") cards[Math.min(index + 1, cards.length - 1)].focus();
    else if (key === "ArrowLeft" || key === "k") cards[Math.max(index - 1, 0)].focus();
    else if (key >= "1" && key <= "7") label(card, { label: emotions[Number(key) - 1] }).then(() => cards[index + 1]?.focus());
    else if (key === "Enter" || key === "a") accept(card).then(() => { if (!card.classList.contains("error")) cards[index + 1]?.focus(); });
    else if (key === "s" && card.dataset.suggested) label(card, { label: card.dataset.suggested }).then(() => cards[index + 1]?.focus());
    else if (key === "o" && card.dataset.original) label(card, { label: card.dataset.original }).then(() => cards[index + 1]?.focus());
    else if (key === "u") label(card, { clear: true });
    else if (key === "x") { const box = card.querySelector(".pick"); box.checked = !box.checked; }
    else return;
    event.preventDefault();
  });

  const bulk = document.getElementById("bulk");
  const picked = () => cards.filter((c) => c.querySelector(".pick").checked);
  const selected = () => picked().map((c) => Number(c.dataset.id));
  document.getElementById("select-all").addEventListener("change", (event) => {
    cards.forEach((c) => { c.querySelector(".pick").checked = event.target.checked; });
  });
  async function bulkLabel(label) {
    const ids = selected();
    const result = document.getElementById("bulk-result");
    if (!ids.length) { result.textContent = "Select images first."; return; }
    // Accepting sends what each card shows, so a stale page accepts nothing rather than other labels.
    const shown = label === null ? Object.fromEntries(picked().map((c) => [c.dataset.id, c.dataset.final])) : undefined;
    try {
      const data = await post(bulk.dataset.url, { ids, label, shown });
      result.textContent = `${data.changed} images updated.`;
      location.reload();
    } catch (err) {
      result.textContent = err.message;
    }
  }
  document.getElementById("bulk-accept").addEventListener("click", () => bulkLabel(null));
  document.getElementById("bulk-set").addEventListener("click", () => bulkLabel(document.getElementById("bulk-label").value));
  cards[0]?.focus();
})();
