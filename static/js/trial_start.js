// Fills the configuration with the chosen preset's defaults; without JavaScript an empty
// textarea means the same thing on the server.
(() => {
  const presets = JSON.parse(document.getElementById("trial-preset-configs").textContent);
  const select = document.getElementById("id_preset");
  const textarea = document.getElementById("id_config");
  function fill() {
    const config = presets[select.value];
    if (config) textarea.value = JSON.stringify(config, null, 2);
  }
  select.addEventListener("change", fill);
  if (!textarea.value.trim()) fill();
})();
