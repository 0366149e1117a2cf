// Sadness's support chat and Fear's mentor: walks the dialogue graph the server rendered into the
// page, one line at a time, and offers the node's choices as buttons.
"use strict";
(function () {
  const { t } = window.Activities;
  const dialogue = JSON.parse(document.getElementById("dialogue-data").textContent);
  const chat = document.getElementById("chat");
  const log = document.getElementById("chat-log");
  const choices = document.getElementById("chat-choices");
  const ending = document.getElementById("chat-ending");
  const reduced = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  const LINE_DELAY_MS = reduced ? 150 : 700;
  let pending = [];

  function bubble(text, who) {
    const item = document.createElement("li");
    item.className = `bubble ${who}`;
    if (who === "bot") item.append(document.getElementById("bot-figure").content.cloneNode(true));
    else {
      const label = document.createElement("span");
      label.className = "visually-hidden";
      label.textContent = `${t("you")}: `;
      item.append(label);
    }
    const body = document.createElement("span");
    body.className = "bubble-text";
    body.textContent = text;
    item.append(body);
    log.append(item);
    item.scrollIntoView({ block: "nearest" });
    return item;
  }

  function breathingBubble() {
    const item = document.createElement("li");
    item.className = "bubble bot exercise";
    item.setAttribute("aria-hidden", "true");
    item.innerHTML = '<span class="breath-bubble"></span>';
    log.append(item);
  }

  function show(nodeId) {
    const node = dialogue.nodes[nodeId];
    chat.dataset.node = nodeId;
    choices.replaceChildren();
    const typing = document.createElement("p");
    typing.className = "typing";
    typing.textContent = t("typing");
    choices.append(typing);
    if (node.exercise === "breathe") breathingBubble();
    node.lines.forEach((line, i) => {
      pending.push(setTimeout(() => bubble(line, "bot"), LINE_DELAY_MS * (i + 1)));
    });
    pending.push(setTimeout(() => offer(node), LINE_DELAY_MS * (node.lines.length + 1)));
  }

  function offer(node) {
    pending = [];
    choices.replaceChildren();
    if (!node.choices.length) {
      chat.dataset.state = "ended";
      ending.hidden = false;
      document.getElementById("chat-ending-title").focus();
      return;
    }
    for (const choice of node.choices) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "choice";
      button.dataset.next = choice.next;
      button.textContent = choice.label;
      button.addEventListener("click", () => {
        bubble(choice.label, "me");
        show(choice.next);
      });
      choices.append(button);
    }
    choices.querySelector("button").focus({ preventScroll: true });
  }

  document.getElementById("chat-restart").addEventListener("click", () => {
    pending.forEach(clearTimeout);
    pending = [];
    log.replaceChildren();
    ending.hidden = true;
    chat.dataset.state = "talking";
    show(dialogue.start);
  });
  show(dialogue.start);
})();
