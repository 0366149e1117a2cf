// Review grid, keyboard first. The grid is one Tab stop (roving tabindex): arrows, Home/End and
// Page Up/Down move between cards and pages; digits, Enter, s, o and u label the focused card.
// Each key press picks its card when it is pressed and focus moves on at once, while the saves
// run one after another in a queue: ten fast presses label ten cards, never one card ten times.
// Accept (button, Enter, a) sends the final label the card shows; the server confirms exactly that
// label, or answers 409 with the label now (policy changed, image relabeled), which the card then
// shows, so a second Accept confirms what the person sees. Ctrl+Z / Ctrl+Shift+Z undo and redo
// the person's last action in the project (a bulk action as one step) once the queue is empty.
(function () {
  const grid = document.getElementById("grid");
  if (!grid) return;
  const canReview = grid.dataset.canReview === "1";
  const emotions = grid.dataset.emotions.split(",");
  // Codes stay English in requests; cards show the names in the page's language.
  const names = Object.fromEntries(emotions.map((e, i) => [e, (grid.dataset.emotionNames || "").split(",")[i] || e]));
  const csrf = document.cookie.match(/csrftoken=([^;]+)/)?.[1] || "";
  const cards = Array.from(grid.querySelectorAll(".thumb"));
  const help = document.getElementById("keys-help");
  const FOCUS_KEY = "review-focus";
  let queue = Promise.resolve();
  let leaving = false;

  // --- Moving around -----------------------------------------------------------------------------

  function focusCard(card) {
    if (!card) return;
    cards.forEach((c) => { c.tabIndex = c === card ? 0 : -1; });
    card.focus();
  }

  function columns() {
    // Cards of the first row share its top; the grid reflows with the window, so count each time.
    const top = cards[0]?.offsetTop;
    const count = cards.filter((c) => c.offsetTop === top).length;
    return Math.max(count, 1);
  }

  function goToPage(id) {
    const link = document.getElementById(id);
    if (!link || leaving) return false;
    leaving = true;
    // The saves already queued finish first: leaving the page must not drop them.
    queue.then(() => { location.href = link.href; });
    return true;
  }

  function next(index) {
    if (index + 1 < cards.length) focusCard(cards[index + 1]);
    else goToPage("next-page");
  }

  function move(card, key) {
    const index = cards.indexOf(card);
    const step = { ArrowRight: 1, j: 1, ArrowLeft: -1, k: -1, ArrowDown: columns(), ArrowUp: -columns() }[key];
    if (step === 1) next(index);
    else if (step !== undefined) focusCard(cards[Math.min(Math.max(index + step, 0), cards.length - 1)]);
    else if (key === "Home") focusCard(cards[0]);
    else if (key === "End") focusCard(cards[cards.length - 1]);
    else if (key === "PageDown") goToPage("next-page");
    else if (key === "PageUp") goToPage("previous-page");
    else if (key === "i") location.href = card.dataset.detail;
    else return false;
    return true;
  }

  grid.addEventListener("focusin", (event) => {
    const card = event.target.closest(".thumb");
    if (card && event.target === card) cards.forEach((c) => { c.tabIndex = c === card ? 0 : -1; });
  });

  // --- Labeling ----------------------------------------------------------------------------------

  async function post(url, body, accept) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: accept || "application/json" },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw Object.assign(new Error(data.error || response.statusText), { data });
    return data;
  }

  function show(card, data) {
    card.dataset.final = data.final_label || "";
    card.querySelector(".final-label").textContent = names[data.final_label] || data.final_label || "–";
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

  async function save(card, body) {
    card.classList.add("saving");
    try {
      show(card, await post(card.dataset.url, body));
      problem(card, "");
    } catch (err) {
      if (err.data && "final_label" in err.data) show(card, err.data);
      problem(card, err.message);
    } finally {
      card.classList.remove("saving");
    }
  }

  // In order, one at a time; a failed save shows on its card and the queue goes on.
  function label(card, body) {
    queue = queue.then(() => save(card, body));
    return queue;
  }

  // Accept reads the label the card shows when its turn comes: a save queued before it on the same
  // card may have changed it.
  const accept = (card, how) => { queue = queue.then(() => save(card, { accept: card.dataset.final, how })); };

  function labelKey(card, key) {
    const index = cards.indexOf(card);
    const how = "keyboard";
    if (key >= "1" && key <= String(emotions.length)) label(card, { label: emotions[Number(key) - 1], how });
    else if (key === "Enter" || key === "a") { if (card.querySelector(".accept")?.disabled) return true; accept(card, how); }
    else if (key === "s" && card.dataset.suggested) label(card, { label: card.dataset.suggested, how });
    else if (key === "o" && card.dataset.original) label(card, { label: card.dataset.original, how });
    else if (key === "u") { label(card, { clear: true, how }); return true; }
    else if (key === "x") { const box = card.querySelector(".pick"); box.checked = !box.checked; return true; }
    else return false;
    next(index);
    return true;
  }

  grid.addEventListener("keydown", (event) => {
    const card = event.target.closest(".thumb");
    if (!card || event.target !== card || event.ctrlKey || event.metaKey || event.altKey) return;
    if (move(card, event.key) || (canReview && labelKey(card, event.key))) event.preventDefault();
  });

  // A click inside a card makes it the focused card, so the keys go on from there; never the
  // control itself, which has no Tab stop of its own.
  grid.addEventListener("click", (event) => {
    const card = event.target.closest(".thumb");
    if (card && !event.target.closest("select, a")) focusCard(card);
  });

  if (canReview) {
    cards.forEach((card) => {
      card.querySelector(".accept")?.addEventListener("click", () => accept(card));
      card.querySelector(".take-suggestion")?.addEventListener("click", () => label(card, { label: card.dataset.suggested }));
      card.querySelector(".keep-original")?.addEventListener("click", () => label(card, { label: card.dataset.original }));
      card.querySelector(".override")?.addEventListener("change", (event) => {
        if (event.target.value) label(card, { label: event.target.value });
        focusCard(card);
      });
    });
  }

  // --- Undo, redo, help: anywhere on the page but in a text field ---------------------------------

  function undo(formId) {
    const form = document.getElementById(formId);
    if (!form || leaving) return;
    leaving = true;
    const focused = document.activeElement?.closest?.(".thumb");
    if (focused) sessionStorage.setItem(FOCUS_KEY, focused.dataset.id);
    queue.then(() => form.submit());
  }

  ["undo-form", "redo-form"].forEach((id) => {
    document.getElementById(id)?.addEventListener("submit", (event) => { event.preventDefault(); undo(id); });
  });

  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input:not([type=checkbox]), textarea, select, [contenteditable]");
    if (typing || help?.open) return;
    const key = event.key.toLowerCase();
    if ((event.ctrlKey || event.metaKey) && key === "z" && canReview) undo(event.shiftKey ? "redo-form" : "undo-form");
    else if ((event.ctrlKey || event.metaKey) && key === "y" && canReview) undo("redo-form");
    else if (event.key === "?" && help) help.showModal();
    else return;
    event.preventDefault();
  });

  document.getElementById("show-keys")?.addEventListener("click", () => help?.showModal());
  // Back to the card it was opened from, never to a control that is hidden.
  help?.addEventListener("close", () => focusCard(cards.find((c) => c.tabIndex === 0) || cards[0]));

  // --- Bulk --------------------------------------------------------------------------------------

  const bulk = document.getElementById("bulk");
  if (bulk) {
    const picked = () => cards.filter((c) => c.querySelector(".pick").checked);
    const matching = document.getElementById("select-matching");
    const result = document.getElementById("bulk-result");
    document.getElementById("select-all").addEventListener("change", (event) => {
      cards.forEach((c) => { c.querySelector(".pick").checked = event.target.checked; });
    });
    matching?.addEventListener("change", () => {
      cards.forEach((c) => { c.querySelector(".pick").checked = matching.checked; });
    });

    async function bulkLabel(body) {
      try {
        const data = await post(bulk.dataset.url, body);
        result.textContent = `${data.changed} ✓`;
        await queue;
        location.reload();
      } catch (err) {
        result.textContent = err.message;
      }
    }

    function chosen(label) {
      // Every image matching the filters, or the picked cards.
      if (matching?.checked) return { filter: bulk.dataset.filter, label };
      const ids = picked().map((c) => Number(c.dataset.id));
      if (!ids.length) return null;
      // Accepting sends what each card shows, so a stale page accepts nothing rather than other labels.
      const shown = label === null ? Object.fromEntries(picked().map((c) => [c.dataset.id, c.dataset.final])) : undefined;
      return { ids, label, shown };
    }

    function bulkClick(label) {
      const body = chosen(label);
      if (!body) { result.textContent = bulk.dataset.selectFirst || "Select images first."; return; }
      bulkLabel(body);
    }

    document.getElementById("bulk-accept").addEventListener("click", () => bulkClick(null));
    document.getElementById("bulk-set").addEventListener("click", () => bulkClick(document.getElementById("bulk-label").value));
    document.getElementById("bulk-suggestions").addEventListener("click", () => {
      bulkLabel({ filter: bulk.dataset.filter, suggestions: true });
    });
  }

  // After an undo or redo the page reloads; focus goes back to the card it was on.
  const back = sessionStorage.getItem(FOCUS_KEY);
  sessionStorage.removeItem(FOCUS_KEY);
  focusCard(cards.find((c) => c.dataset.id === back) || cards[0]);
})();
