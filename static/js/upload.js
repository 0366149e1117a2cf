// Upload with drag and drop and a progress bar. One upload token per page load, so a
// double-clicked submit yields one batch.
(function () {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("files");
  const zone = document.getElementById("dropzone");
  const chosen = document.getElementById("chosen");
  const bar = document.getElementById("upload-progress");
  const result = document.getElementById("upload-result");
  const button = document.getElementById("upload-button");
  let files = [];

  function choose(list) {
    files = Array.from(list);
    const bytes = files.reduce((sum, f) => sum + f.size, 0);
    chosen.textContent = files.length ? `${files.length} file(s), ${(bytes / 1048576).toFixed(1)} MB` : "";
  }
  input.addEventListener("change", () => choose(input.files));
  ["dragenter", "dragover"].forEach((name) => zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((name) => zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (e) => choose(e.dataTransfer.files));

  function show(data, status) {
    result.replaceChildren();
    const p = document.createElement("p");
    if (status >= 400) {
      p.className = "error";
      p.textContent = data.error || `Upload failed (${status}).`;
      result.append(p);
      return;
    }
    p.textContent = `${data.images} image(s) imported. `;
    const link = document.createElement("a");
    link.href = data.url;
    link.id = "batch-link";
    link.textContent = "Watch the labeling";
    p.append(link);
    result.append(p);
    if (data.rejected.length) {
      const list = document.createElement("ul");
      list.className = "errors";
      data.rejected.forEach((r) => {
        const li = document.createElement("li");
        li.textContent = `${r.name}: ${r.reason}`;  // textContent: file names are never HTML
        list.append(li);
      });
      result.append(list);
    }
    if (data.rejected_count > data.rejected.length) {
      const more = document.createElement("p");
      more.textContent = `${data.rejected_count - data.rejected.length} more on the batch's page.`;
      result.append(more);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!files.length) { show({ error: "Choose at least one JPG or ZIP file." }, 400); return; }
    const body = new FormData();
    body.append("upload_token", form.dataset.token);
    files.forEach((f) => body.append("files", f, f.name));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action || location.href);
    xhr.setRequestHeader("X-CSRFToken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    bar.hidden = false;
    button.disabled = true;
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; };
    xhr.onload = () => {
      button.disabled = false;
      let data = {};
      try { data = JSON.parse(xhr.responseText); } catch (_) { data = { error: `Upload failed (${xhr.status}).` }; }
      show(data, xhr.status);
    };
    xhr.onerror = () => { button.disabled = false; show({ error: "The upload was interrupted." }, 500); };
    xhr.send(body);
  });
})();
