// Upload with drag and drop and one progress bar. A drop of any size is sent in parts that stay
// under the server's limits (files and bytes per request, from the form's data attributes), one
// after the other, and reported once. Each part has its own upload token, made when the files
// are chosen, so a double-clicked submit or a retried part yields one batch per part, not two.
(function () {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("files");
  const zone = document.getElementById("dropzone");
  const chosen = document.getElementById("chosen");
  const bar = document.getElementById("upload-progress");
  const result = document.getElementById("upload-result");
  const button = document.getElementById("upload-button");
  const texts = document.getElementById("upload-texts").dataset;
  // Read when files are chosen. The byte limit leaves room for the multipart headers.
  const maxFiles = () => Number(form.dataset.maxFiles) || 1000;
  const maxBytes = () => (Number(form.dataset.maxBytes) || 1024 * 1024 * 1024) - 1024 * 1024;
  let parts = [];
  let tooBig = [];

  function say(text, values) {
    return text.replace(/%\((\w+)\)s/g, (_, key) => String(values[key]));
  }

  function uuid4() {
    // crypto.randomUUID needs a secure context; getRandomValues does not.
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function split(files) {
    const out = [];
    let part = null;
    files.forEach((f) => {
      if (!part || part.files.length >= maxFiles() || part.bytes + f.size > maxBytes()) {
        part = { files: [], bytes: 0, token: out.length ? uuid4() : form.dataset.token };
        out.push(part);
      }
      part.files.push(f);
      part.bytes += f.size;
    });
    return out;
  }

  function choose(list) {
    const files = Array.from(list);
    tooBig = files.filter((f) => f.size > maxBytes());
    parts = split(files.filter((f) => f.size <= maxBytes()));
    const bytes = files.reduce((sum, f) => sum + f.size, 0);
    chosen.textContent = files.length ? say(texts.chosen, { files: files.length, mb: (bytes / 1048576).toFixed(1) }) : "";
  }
  input.addEventListener("change", () => choose(input.files));
  ["dragenter", "dragover"].forEach((name) => zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((name) => zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (e) => {
    // The file input shows the dropped files too, instead of "No file chosen".
    try { input.files = e.dataTransfer.files; } catch (_) { /* older browsers: the count below says it */ }
    choose(e.dataTransfer.files);
  });

  function line(text, className) {
    const p = document.createElement("p");
    if (className) p.className = className;
    p.textContent = text;  // textContent: file names and server messages are never HTML
    result.append(p);
    return p;
  }

  function report(done, failure) {
    result.replaceChildren();
    const images = done.reduce((sum, d) => sum + d.images, 0);
    if (done.length) {
      const p = line(say(texts.imported, { images, batches: done.length }) + " ");
      done.forEach((d, i) => {
        const link = document.createElement("a");
        link.href = d.url;
        if (i === 0) link.id = "batch-link";
        link.textContent = done.length > 1 ? `${texts.watch} (${i + 1})` : texts.watch;
        p.append(link, " ");
      });
    }
    const rejected = tooBig.map((f) => ({ name: f.name, reason: say(texts.tooBig, { name: f.name }) }));
    done.forEach((d) => rejected.push(...d.rejected));
    if (rejected.length) {
      const list = document.createElement("ul");
      list.className = "errors";
      rejected.slice(0, 200).forEach((r) => {
        const li = document.createElement("li");
        li.textContent = `${r.name}: ${r.reason}`;
        list.append(li);
      });
      result.append(list);
    }
    const unlisted = done.reduce((sum, d) => sum + d.rejected_count - d.rejected.length, 0) + Math.max(0, rejected.length - 200);
    if (unlisted > 0) line(say(texts.more, { count: unlisted }));
    if (failure) {
      line(failure, "error");
      if (done.length) line(say(texts.stopped, { part: done.length, parts: parts.length }), "error");
    }
  }

  function send(part, sentBytes, totalBytes) {
    return new Promise((resolve) => {
      const body = new FormData();
      body.append("upload_token", part.token);
      part.files.forEach((f) => body.append("files", f, f.name));
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action || location.href);
      xhr.setRequestHeader("X-CSRFToken", form.querySelector("[name=csrfmiddlewaretoken]").value);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) bar.value = (100 * (sentBytes + (part.bytes * e.loaded) / e.total)) / totalBytes;
      };
      xhr.onload = () => {
        let data = {};
        try { data = JSON.parse(xhr.responseText); } catch (_) { data = {}; }
        resolve({ status: xhr.status, data });
      };
      xhr.onerror = () => resolve({ status: 0, data: { error: texts.interrupted } });
      xhr.send(body);
    });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!parts.length) { result.replaceChildren(); line(tooBig.length ? say(texts.tooBig, { name: tooBig[0].name }) : texts.empty, "error"); return; }
    const totalBytes = parts.reduce((sum, p) => sum + p.bytes, 0) || 1;
    const done = [];
    let sent = 0;
    let failure = "";
    bar.hidden = false;
    bar.value = 0;
    button.disabled = true;
    for (const [i, part] of parts.entries()) {
      chosen.textContent = say(texts.sending, { part: i + 1, parts: parts.length });
      const { status, data } = await send(part, sent, totalBytes);
      if (status !== 201) {
        failure = data.error || say(texts.failed, { status });
        break;
      }
      done.push(data);
      sent += part.bytes;
      // notify.js (every signed-in page) says when this batch is labeled.
      if (window.facelabelWatch) window.facelabelWatch({ kind: "batch", json: `${data.url}progress/`, page: data.url, label: `#${data.batch}` });
    }
    chosen.textContent = "";
    button.disabled = false;
    report(done, failure);
  });
})();
