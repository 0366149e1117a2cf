// Selecting and copying a new API token's key (shown once, on the profile page).
(() => {
  const key = document.getElementById("new-key");
  if (!key) return;
  key.addEventListener("focus", () => key.select());
  document.getElementById("copy-key").addEventListener("click", () => navigator.clipboard.writeText(key.value));
})();
