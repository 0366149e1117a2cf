// Image detail: zoom the picture (and its face box) in steps; the frame scrolls when it is larger.
(function () {
  const frame = document.getElementById("zoom-frame");
  const picture = document.getElementById("zoom-image");
  if (!frame || !picture) return;
  let scale = 1;
  function apply() {
    // Relative to the frame, so "fit" is right on a phone and on a desktop alike.
    picture.style.width = `${scale * 100}%`;
    frame.classList.toggle("zoomed", scale > 1);
  }
  document.querySelectorAll("[data-zoom]").forEach((button) => {
    button.addEventListener("click", () => {
      const how = button.dataset.zoom;
      scale = how === "fit" ? 1 : how === "in" ? Math.min(scale * 1.5, 8) : Math.max(scale / 1.5, 1);
      apply();
    });
  });
})();
