// Live batch progress: polls a cheap JSON endpoint; the page never waits on the model.
(function () {
  const box = document.getElementById("progress");
  if (!box) return;
  const set = (id, value) => { document.getElementById(id).textContent = value; };
  async function poll() {
    try {
      const data = await (await fetch(box.dataset.url, { headers: { Accept: "application/json" } })).json();
      // The JSON says the machine's word; the page shows its own (data-status-<value>).
      set("status", box.dataset[`status${data.status[0].toUpperCase()}${data.status.slice(1)}`] || data.status);
      set("done", data.done);
      set("total", data.total);
      set("labeled", data.labeled);
      set("failed", data.failed);
      set("rate", data.images_per_second ?? "–");
      const bar = document.getElementById("bar");
      bar.max = data.total || 1;
      bar.value = data.done;
      const errors = document.getElementById("errors");
      errors.replaceChildren(...data.errors.map((e) => {
        const li = document.createElement("li");
        li.textContent = `${e.original_name}: ${e.error}`;
        return li;
      }));
      if (data.status !== "done") setTimeout(poll, 1000);
    } catch (_) {
      setTimeout(poll, 3000);
    }
  }
  poll();
})();
