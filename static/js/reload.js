// Reloads the page after data-after-ms milliseconds, while something on it is still running.
(() => {
  const after = Number(document.currentScript.dataset.afterMs || 1500);
  setTimeout(() => location.reload(), after);
})();
