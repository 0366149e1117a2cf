// Review grid: accept/override one image (buttons or keyboard) and bulk actions. In the audit's
// "likely mislabeled" queue, s takes the suggested label and o keeps the original one.
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
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }

  async function label(card, body) {
    try {
      const data = await post(card.dataset.url, body);
      card.querySelector(".final-label").textContent = data.final_label || "–";
      card.classList.toggle("reviewed", !!data.reviewed_label);
      card.classList.remove("error");
    } catch (err) {
      card.classList.add("error");
      card.title = err.message;
    }
  }

  cards.forEach((card) => {
    card.querySelector(".accept")?.addEventListener("click", () => label(card, { label: null }));
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
    else if (key === "Enter" || key === "a") label(card, { label: null }).then(() => cards[index + 1]?.focus());
    else if (key === "s" && card.dataset.suggested) label(card, { label: card.dataset.suggested }).then(() => cards[index + 1]?.focus());
    else if (key === "o" && card.dataset.original) label(card, { label: card.dataset.original }).then(() => cards[index + 1]?.focus());
    else if (key === "u") label(card, { clear: true });
    else if (key === "x") { const box = card.querySelector(".pick"); box.checked = !box.checked; }
    else return;
    event.preventDefault();
  });

  const bulk = document.getElementById("bulk");
  const selected = () => cards.filter((c) => c.querySelector(".pick").checked).map((c) => Number(c.dataset.id));
  document.getElementById("select-all").addEventListener("change", (event) => {
    cards.forEach((c) => { c.querySelector(".pick").checked = event.target.checked; });
  });
  async function bulkLabel(label) {
    const ids = selected();
    const result = document.getElementById("bulk-result");
    if (!ids.length) { result.textContent = "Select images first."; return; }
    try {
      const data = await post(bulk.dataset.url, { ids, label });
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
