// The language switch submits itself when a language is picked (the <noscript> button covers
// browsers without scripts). A file, not an onchange attribute: the CSP allows no inline script.
document.getElementById("language-select")?.addEventListener("change", (event) => event.target.form.submit());
