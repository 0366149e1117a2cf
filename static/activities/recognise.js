// The start page: camera preview, one captured frame (or an uploaded photo) sent to the server,
// and the answer shown as the emotion, its probabilities and the character's greeting.
"use strict";
(function () {
  const { t, post } = window.Activities;
  const panel = document.getElementById("recognise-panel");
  const video = document.getElementById("camera");
  const status = document.getElementById("camera-status");
  const button = document.getElementById("recognise");
  const photo = document.getElementById("photo");
  const errorBox = document.getElementById("recognise-error");
  const ORDER = ["happy", "sad", "angry", "fear", "disgust", "surprise", "neutral"];

  async function startCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      noCamera(t("noCamera"));
      return;
    }
    status.textContent = t("cameraStarting");
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user", width: { ideal: 640 } }, audio: false });
      video.srcObject = stream;
      await video.play();
      button.disabled = false;
      status.textContent = t("cameraReady");
      panel.dataset.camera = "on";
    } catch (error) {
      noCamera(error && error.name === "NotAllowedError" ? t("cameraRefused") : t("noCamera"));
    }
  }

  function noCamera(message) {
    panel.dataset.camera = "off";
    video.hidden = true;
    status.textContent = message;
  }

  function captureFrame() {
    const width = Math.min(video.videoWidth || 640, 640);
    const height = Math.round(width * ((video.videoHeight || 480) / (video.videoWidth || 640)));
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    canvas.getContext("2d").drawImage(video, 0, 0, width, height);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  }

  async function recognise(blob, name) {
    errorBox.hidden = true;
    button.disabled = true;
    photo.disabled = true;
    const previous = status.textContent;
    status.textContent = t("recognising");
    const form = new FormData();
    form.append("image", blob, name);
    const { ok, data } = await post(panel.dataset.url, form, false);
    status.textContent = previous;
    button.disabled = panel.dataset.camera !== "on";
    photo.disabled = false;
    // No face found is an answer, not an error, but it names no emotion: the visitor is told
    // what to try and the picker stays the way on.
    if (!ok || !data.face_found) {
      document.getElementById("result").hidden = true;
      errorBox.textContent = data.detail || t("failed");
      errorBox.hidden = false;
      return;
    }
    show(data);
  }

  function show(data) {
    const result = document.getElementById("result");
    result.dataset.emotion = data.emotion;
    document.getElementById("result-emotion").textContent = data.label;
    document.getElementById("result-greeting").textContent = `“${data.greeting}”`;
    const figure = document.querySelector(`#character-figures`).content.querySelector(`[data-emotion="${data.emotion}"]`);
    const holder = document.getElementById("result-character");
    holder.replaceChildren(figure ? figure.cloneNode(true) : "");
    const link = document.getElementById("open-experience");
    link.href = data.url;
    link.textContent = data.activity ? t("openActivity", { activity: data.activity }) : t("pickAnother");
    const bars = document.getElementById("result-bars");
    bars.replaceChildren(...ORDER.map((emotion) => bar(data, emotion)));
    result.hidden = false;
    document.getElementById("result-title").focus();
  }

  function bar(data, emotion) {
    const percent = Math.round((data.probabilities[emotion] || 0) * 100);
    const item = document.createElement("li");
    item.className = "bar" + (emotion === data.emotion ? " top" : "");
    const name = document.createElement("span");
    name.className = "bar-name";
    name.textContent = data.labels[emotion];
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = `${percent}%`;
    fill.style.background = data.colours[emotion];
    track.append(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = `${percent}%`;
    item.append(name, track, value);
    return item;
  }

  button.addEventListener("click", async () => recognise(await captureFrame(), "camera.jpg"));
  photo.addEventListener("change", () => {
    if (photo.files.length) recognise(photo.files[0], photo.files[0].name);
    photo.value = "";
  });
  startCamera();
})();
