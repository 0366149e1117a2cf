// Tells a signed-in person, on whatever page they are, when a batch is labeled, an audit is done
// or an export is ready. What to watch is kept in localStorage, so it survives moving between
// pages; each item is polled through the JSON endpoint its own page already uses.
(function () {
  const KEY = "facelabel.watch";
  const FINISHED = { batch: ["done"], export: ["ready", "failed"], audit: ["done", "failed", "superseded"] };
  const texts = document.getElementById("notify-texts");
  const region = document.getElementById("notifications");
  if (!texts || !region) return;

  function load() {
    try { return JSON.parse(localStorage.getItem(KEY)) || []; } catch (_) { return []; }
  }
  function save(items) {
    try { localStorage.setItem(KEY, JSON.stringify(items)); } catch (_) { /* private mode: no notes */ }
  }

  // {kind, json, page, label}; the same JSON address is watched once.
  function watch(item) {
    const items = load().filter((i) => i.json !== item.json);
    items.push({ ...item, since: Date.now() });
    save(items);
    start();
  }
  window.facelabelWatch = watch;

  function say(item, status) {
    const key = item.kind + (status === "failed" ? "Failed" : "Done");
    const li = document.createElement("li");
    li.className = status === "failed" ? "error" : "success";
    li.textContent = (texts.dataset[key] || "{label}").replace("{label}", item.label) + " ";
    const link = document.createElement("a");
    link.href = item.page;
    link.textContent = texts.dataset.open;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "link";
    close.textContent = texts.dataset.dismiss;
    close.addEventListener("click", () => li.remove());
    li.append(link, " ", close);
    region.append(li);
  }

  async function poll() {
    const day = 24 * 3600 * 1000;
    const items = load().filter((i) => Date.now() - i.since < day);
    const left = [];
    for (const item of items) {
      try {
        const response = await fetch(item.json, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (response.status === 404 || response.status === 403) continue;  // gone, or not ours
        const status = (await response.json()).status;
        if (FINISHED[item.kind].includes(status)) say(item, status); else left.push(item);
      } catch (_) {
        left.push(item);  // offline for a moment: ask again later
      }
    }
    // Items added while polling are kept too.
    const added = load().filter((i) => !items.some((j) => j.json === i.json));
    save([...left, ...added]);
  }

  let running = false;
  function start() {
    if (running) return;
    running = true;
    const loop = () => poll().finally(() => {
      if (load().length) setTimeout(loop, 3000); else running = false;
    });
    setTimeout(loop, 1500);
  }

  // A page that shows something still running asks to be told when it ends.
  document.querySelectorAll("[data-watch-kind]").forEach((el) => watch({
    kind: el.dataset.watchKind, json: el.dataset.watchJson, page: el.dataset.watchPage || location.pathname, label: el.dataset.watchLabel,
  }));
  if (load().length) start();
})();
