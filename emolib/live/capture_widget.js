// emolib live demo widget (anywidget ES module).
//
// backend "browser": the Record button asks this browser for the camera and microphone
// (getUserMedia), records `seconds` of mono Float32 PCM (Web Audio), grabs a JPEG frame in the
// middle of the recording, and sends both to the kernel through the `audio`, `sample_rate` and
// `frame` traits (binary buffers), bumping `captures`. Any failure (permission denied, no device,
// insecure page) goes to the `status`/`error` traits and is shown here in red.
// Other backends ("local", "file"): the button sends {type: "record"} and the kernel captures.
// The kernel answers with `status`, `message`, `received` (what it got), `result_text` and
// `result_png` (the prediction figure).
// Streaming ("Start streaming", browser backend): every `hop` seconds the page sends {type: "stream", rate} with two buffers
// (the audio samples since the last send, Float32, and a JPEG frame); the kernel's StreamEngine answers each update with
// {type: "update", update}. The page shows the camera with the face boxes and labels, the current emotion with voice / face /
// fused bars, a strip of the last 30 s of smoothed probabilities, "no speech" / "no face", and the update rate and latency.

const ERROR_HELP = {
  NotAllowedError: "permission denied: allow camera and microphone access for this page (address bar) and press Record again",
  SecurityError: "permission denied by the browser's security settings",
  NotFoundError: "no camera or microphone found: plug one in, or use capture=\"local\" or \"file\"",
  NotReadableError: "the camera or microphone is busy (used by another application?)",
  OverconstrainedError: "no camera or microphone matches the requested settings",
  AbortError: "the browser aborted the capture",
};

const STRIP_SECONDS = 30;
const COLOURS = { ANG: "#d62728", DIS: "#8c564b", FEA: "#9467bd", HAP: "#ffbf00", NEU: "#7f7f7f", SAD: "#1f77b4" };
const OTHER_COLOURS = ["#d62728", "#1f77b4", "#ffbf00", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

function describe(error) {
  const name = (error && error.name) || "Error";
  const help = ERROR_HELP[name];
  const detail = (error && error.message) || String(error);
  return help ? `${help} (${name}: ${detail})` : `${name}: ${detail}`;
}

function element(tag, className, parent, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function openDevices(notes) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw Object.assign(new Error(
      "this page cannot use the camera or microphone (getUserMedia needs https:// or http://localhost)"), { name: "InsecureContext" });
  }
  const audio = { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false };
  const video = { width: { ideal: 640 }, height: { ideal: 480 } };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio, video });
  } catch (error) {
    if (!["NotFoundError", "OverconstrainedError", "NotReadableError"].includes(error.name)) throw error;
    // One of the two may still work: record what there is and say what is missing.
    for (const [kind, constraints] of [["camera", { audio }], ["microphone", { video }]]) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        notes.push(`no ${kind} (${error.name}): recording without it`);
        return stream;
      } catch (ignored) { /* try the other one */ }
    }
    throw error;
  }
}

async function startVideo(stream, preview) {
  if (!stream.getVideoTracks().length) return null;
  preview.srcObject = stream;
  preview.muted = true;
  preview.playsInline = true;
  preview.style.display = "block";
  await preview.play().catch(() => {});
  for (let i = 0; i < 50 && !(preview.videoWidth > 0 && preview.readyState >= 2); i++) await sleep(100);
  return preview.videoWidth > 0 ? preview : null;
}

function grabFrame(video) {
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext("2d");
  context.drawImage(video, 0, 0);
  // Pixel standard deviation on a small copy: a black or frozen camera gives ~0.
  const small = document.createElement("canvas");
  small.width = 64;
  small.height = Math.max(1, Math.round((64 * canvas.height) / canvas.width));
  small.getContext("2d").drawImage(canvas, 0, 0, small.width, small.height);
  const pixels = small.getContext("2d").getImageData(0, 0, small.width, small.height).data;
  let sum = 0, squares = 0, count = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    for (let c = 0; c < 3; c++) { sum += pixels[i + c]; squares += pixels[i + c] * pixels[i + c]; count++; }
  }
  const mean = sum / count;
  const std = Math.sqrt(Math.max(0, squares / count - mean * mean));
  return new Promise((resolve) => canvas.toBlob(async (blob) => resolve({
    bytes: await blob.arrayBuffer(), width: canvas.width, height: canvas.height, std,
  }), "image/jpeg", 0.92));
}

function startStreamAudio(stream, onChunk) {
  if (!stream.getAudioTracks().length) return null;
  const Context = window.AudioContext || window.webkitAudioContext;
  const context = new Context();
  const source = context.createMediaStreamSource(stream);
  const processor = context.createScriptProcessor(4096, 1, 1);
  const mute = context.createGain();
  mute.gain.value = 0;
  processor.onaudioprocess = (event) => onChunk(new Float32Array(event.inputBuffer.getChannelData(0)));
  source.connect(processor);
  processor.connect(mute);
  mute.connect(context.destination);
  context.resume();
  return { context, rate: context.sampleRate, stop: () => { source.disconnect(); processor.disconnect(); context.close(); } };
}

async function recordAudio(stream, seconds, onProgress) {
  const chunks = [];
  let collected = 0, wanted = Infinity;
  const audio = startStreamAudio(stream, (data) => {
    if (collected >= wanted) return;
    chunks.push(data);
    collected += data.length;
  });
  if (!audio) return null;
  await audio.context.resume();
  const rate = audio.rate;
  wanted = Math.round(seconds * rate);
  const started = performance.now();
  while (collected < wanted) {
    const elapsed = (performance.now() - started) / 1000;
    onProgress(Math.min(elapsed, seconds));
    if (elapsed > seconds + 5) break; // the audio clock stalled: send what arrived
    await sleep(100);
  }
  audio.stop();
  const samples = new Float32Array(Math.min(collected, wanted));
  let offset = 0;
  for (const chunk of chunks) {
    const part = chunk.subarray(0, Math.min(chunk.length, samples.length - offset));
    samples.set(part, offset);
    offset += part.length;
    if (offset >= samples.length) break;
  }
  let squares = 0;
  for (let i = 0; i < samples.length; i++) squares += samples[i] * samples[i];
  const rms = samples.length ? Math.sqrt(squares / samples.length) : 0;
  return { samples, rate, rms };
}

function labelColour(label, labels) {
  return COLOURS[label] || OTHER_COLOURS[Math.max(0, labels.indexOf(label)) % OTHER_COLOURS.length];
}

function streamView(el) {
  const view = element("div", "emolib-stream", el);
  view.style.display = "none";
  const stage = element("div", "emolib-stage", view);
  const video = element("video", "emolib-stream-video", stage);
  const overlay = element("canvas", "emolib-overlay", stage);
  const side = element("div", "emolib-stream-side", view);
  const current = element("div", "emolib-current", side);
  const states = element("div", "emolib-states", side);
  const bars = element("div", "emolib-bars", side);
  const rate = element("div", "emolib-rate", side);
  const strip = element("canvas", "emolib-strip", view);
  strip.width = 600;
  strip.height = 90;
  return { view, video, overlay, current, states, bars, rate, strip };
}

function drawBoxes(parts, faces, size) {
  const { overlay, video } = parts;
  overlay.width = video.clientWidth || 320;
  overlay.height = video.clientHeight || 240;
  const context = overlay.getContext("2d");
  context.clearRect(0, 0, overlay.width, overlay.height);
  if (!size || !size.width) return 0;
  const scale = overlay.width / size.width;
  let drawn = 0;
  for (const face of faces || []) {
    const [x, y, w, h] = face.box;
    context.strokeStyle = face.main ? "#00ff66" : "#ffaa00";
    context.lineWidth = 2;
    context.strokeRect(x * scale, y * scale, w * scale, h * scale);
    context.fillStyle = context.strokeStyle;
    context.font = "12px sans-serif";
    context.fillText(face.label, x * scale + 2, Math.max(12, y * scale - 3));
    drawn++;
  }
  return drawn;
}

function drawStrip(canvas, history, labels) {
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!history.length) return;
  const last = history[history.length - 1].time;
  const x = (time) => canvas.width * (1 - (last - time) / STRIP_SECONDS);
  for (const label of labels) {
    context.strokeStyle = labelColour(label, labels);
    context.lineWidth = 2;
    context.beginPath();
    history.forEach((update, index) => {
      const value = update.smoothed ? update.smoothed[label] || 0 : 0;
      const point = [x(update.time), canvas.height * (1 - value)];
      if (index) context.lineTo(...point); else context.moveTo(...point);
    });
    context.stroke();
  }
}

function showBars(node, update, labels) {
  node.replaceChildren();
  for (const [name, probabilities] of [["voice", update.voice], ["face", update.face], ["fused", update.raw]]) {
    const row = element("div", "emolib-bar-row", node);
    element("span", "emolib-bar-name", row, name);
    const track = element("div", "emolib-bar-track", row);
    if (!probabilities) { element("span", "emolib-bar-none", track, "-"); continue; }
    for (const label of labels) {
      const piece = element("div", "emolib-bar-piece", track);
      piece.style.width = `${(100 * (probabilities[label] || 0)).toFixed(1)}%`;
      piece.style.background = labelColour(label, labels);
      piece.title = `${label} ${(100 * (probabilities[label] || 0)).toFixed(0)}%`;
    }
  }
}

function render({ model, el }) {
  el.classList.add("emolib-capture");
  const header = element("div", "emolib-header", el);
  const button = element("button", "emolib-record", header, "\u25CF Record");
  const streamButton = element("button", "emolib-stream-button", header, "\u25B6 Start streaming");
  const status = element("span", "emolib-status", header);
  const bar = element("div", "emolib-progress", el);
  const fill = element("div", "emolib-progress-fill", bar);
  const preview = element("video", "emolib-preview", el);
  preview.style.display = "none";
  const error = element("div", "emolib-error", el);
  const stats = element("div", "emolib-stats", el);
  const labels = element("div", "emolib-labels", el);
  const result = element("div", "emolib-result", el);
  const resultText = element("div", "emolib-result-text", result);
  const probabilities = element("div", "emolib-probabilities", result);
  const resultImage = element("img", "emolib-result-image", result);
  resultImage.alt = "prediction";
  let imageUrl = null;
  const parts = streamView(el);
  let streaming = null;  // {stream, audio, timer, chunks, size, started, history}

  function progress(elapsed, seconds) {
    fill.style.width = `${Math.min(100, (100 * elapsed) / seconds).toFixed(0)}%`;
  }

  function update() {
    const state = model.get("status");
    const busy = ["requesting", "recording", "processing"].includes(state);
    button.disabled = busy;
    el.dataset.status = state;
    status.textContent = model.get("message") || state;
    const problem = model.get("error");
    error.textContent = problem ? `\u26A0 ${problem}` : "";
    error.style.display = problem ? "block" : "none";
    const received = model.get("received") || {};
    const page = model.get("page_stats") || {};
    if (received.audio_rms !== undefined || received.frame_std !== undefined) {
      stats.dataset.rms = String(received.audio_rms ?? "");
      stats.dataset.frameStd = String(received.frame_std ?? "");
      stats.dataset.pageRms = String(page.rms ?? "");
      stats.dataset.pageFrameStd = String(page.frame_std ?? "");
      const audio = received.audio_seconds !== undefined && received.audio_seconds !== null
        ? `${received.audio_seconds.toFixed(2)} s at ${received.sample_rate} Hz, RMS ${Number(received.audio_rms).toFixed(4)}` : "none";
      const frame = received.frame_shape ? `${received.frame_shape[1]}\u00D7${received.frame_shape[0]}, pixel std ${Number(received.frame_std).toFixed(1)}` : "none";
      stats.textContent = `received by the kernel - audio: ${audio}; frame: ${frame}`;
    } else {
      stats.textContent = "";
    }
    const names = model.get("labels") || [];
    labels.textContent = names.length ? `labels: ${names.join(", ")}` : "";
    const text = model.get("result_text");
    resultText.textContent = text;
    const prediction = model.get("result") || {};
    result.dataset.emotion = prediction.emotion || "";
    probabilities.replaceChildren();
    for (const [name, value] of Object.entries(prediction.probabilities || {})) {
      const top = name === prediction.emotion ? " emolib-probability-top" : "";
      element("span", `emolib-probability-label${top}`, probabilities, name).dataset.label = name;
      const track = element("div", "emolib-probability-track", probabilities);
      element("div", "emolib-probability-bar", track).style.width = `${(100 * value).toFixed(0)}%`;
      element("span", `emolib-probability-value${top}`, probabilities, `${(100 * value).toFixed(0)}%`);
    }
    const png = model.get("result_png");
    if (imageUrl) URL.revokeObjectURL(imageUrl);
    imageUrl = null;
    if (png && png.byteLength) {
      imageUrl = URL.createObjectURL(new Blob([png], { type: "image/png" }));
      resultImage.src = imageUrl;
      resultImage.style.display = "block";
    } else {
      resultImage.removeAttribute("src");
      resultImage.style.display = "none";
    }
    result.style.display = text ? "block" : "none";
  }

  function fail(problem) {
    model.set({ status: "error", error: problem, message: "capture failed", result: {}, result_text: "", result_png: new DataView(new ArrayBuffer(0)) });
    model.save_changes();
  }

  async function recordInBrowser() {
    const seconds = model.get("seconds");
    const notes = [];
    model.set({ status: "requesting", error: "", message: "asking for camera and microphone\u2026" });
    model.save_changes();
    let stream;
    try {
      stream = await openDevices(notes);
    } catch (problem) {
      fail(describe(problem));
      return;
    }
    try {
      const video = await startVideo(stream, preview);
      model.set({ status: "recording", message: `recording ${seconds} s\u2026` + (notes.length ? ` (${notes.join("; ")})` : "") });
      model.save_changes();
      let frame = null;
      const framePromise = video ? sleep((seconds * 1000) / 2).then(() => grabFrame(video)) : Promise.resolve(null);
      const audio = await recordAudio(stream, seconds, (elapsed) => {
        progress(elapsed, seconds);
        status.textContent = `recording\u2026 ${Math.max(0, seconds - elapsed).toFixed(1)} s left`;
      });
      frame = await framePromise;
      progress(seconds, seconds);
      const pageStats = {
        rms: audio ? audio.rms : null, sample_rate: audio ? audio.rate : null, samples: audio ? audio.samples.length : 0,
        frame_std: frame ? frame.std : null, width: frame ? frame.width : null, height: frame ? frame.height : null,
        notes,
      };
      model.set({
        audio: new DataView(audio ? audio.samples.buffer : new ArrayBuffer(0)),
        sample_rate: audio ? audio.rate : 0,
        frame: new DataView(frame ? frame.bytes : new ArrayBuffer(0)),
        page_stats: pageStats,
        status: "processing",
        message: "predicting\u2026",
        captures: model.get("captures") + 1,
      });
      model.save_changes();
    } catch (problem) {
      fail(describe(problem));
    } finally {
      stream.getTracks().forEach((track) => track.stop());
      preview.srcObject = null;
      preview.style.display = "none";
    }
  }

  async function startStreaming() {
    const notes = [];
    let stream;
    try {
      stream = await openDevices(notes);
    } catch (problem) {
      fail(describe(problem));
      return;
    }
    const video = await startVideo(stream, parts.video);
    const state = { stream, chunks: [], size: null, started: performance.now(), history: [], sent: 0 };
    state.audio = startStreamAudio(stream, (chunk) => state.chunks.push(chunk));
    parts.view.style.display = "flex";
    el.dataset.streaming = "yes";
    streamButton.textContent = "\u25A0 Stop";
    button.disabled = true;
    const hop = model.get("hop") || 1.0;
    state.timer = setInterval(async () => {
      const total = state.chunks.reduce((sum, chunk) => sum + chunk.length, 0);
      const samples = new Float32Array(total);
      let offset = 0;
      for (const chunk of state.chunks.splice(0)) { samples.set(chunk, offset); offset += chunk.length; }
      let frame = null;
      if (video) {
        frame = await grabFrame(video);
        state.size = { width: frame.width, height: frame.height };
      }
      state.sent++;
      model.send({ type: "stream", rate: state.audio ? state.audio.rate : 0, notes },
                 undefined, [samples.buffer, frame ? frame.bytes : new ArrayBuffer(0)]);
    }, hop * 1000);
    streaming = state;
  }

  function stopStreaming() {
    if (!streaming) return;
    clearInterval(streaming.timer);
    if (streaming.audio) streaming.audio.stop();
    streaming.stream.getTracks().forEach((track) => track.stop());
    streaming = null;
    el.dataset.streaming = "no";
    streamButton.textContent = "\u25B6 Start streaming";
    button.disabled = false;
    model.send({ type: "stop" });
  }

  function showUpdate(update) {
    if (!streaming) return;
    const labels = model.get("labels") || Object.keys(update.raw || update.smoothed || {});
    streaming.history.push(update);
    while (streaming.history.length && update.time - streaming.history[0].time > STRIP_SECONDS) streaming.history.shift();
    const shown = update.label ? `${update.label} ${(100 * update.smoothed[update.label]).toFixed(0)}%` : "\u2013";
    parts.current.textContent = shown;
    parts.current.dataset.label = update.label || "";
    const flags = [];
    if (update.no_speech) flags.push("no speech");
    if (update.no_face) flags.push("no face");
    parts.states.textContent = flags.join(" \u00B7 ");
    parts.states.dataset.noSpeech = update.no_speech ? "yes" : "no";
    parts.states.dataset.noFace = update.no_face ? "yes" : "no";
    el.dataset.noSpeechSeen = el.dataset.noSpeechSeen === "yes" || update.no_speech ? "yes" : "no";
    showBars(parts.bars, update, labels);
    const seconds = (performance.now() - streaming.started) / 1000;
    const count = streaming.history.length ? (el.dataset.updates = String(Number(el.dataset.updates || 0) + 1)) : 0;
    parts.rate.textContent = `${(Number(count) / Math.max(seconds, 1e-3)).toFixed(2)} updates/s, latency ${(1000 * update.latency).toFixed(0)} ms, ` +
      `skipped ${update.skipped}`;
    const drawn = drawBoxes(parts, update.faces, streaming.size);
    if (drawn) el.dataset.boxesDrawn = String(Number(el.dataset.boxesDrawn || 0) + drawn);
    drawStrip(parts.strip, streaming.history, labels);
  }

  streamButton.addEventListener("click", () => {
    if (streaming) stopStreaming();
    else if (model.get("backend") === "browser") startStreaming();
    else fail("streaming records in the browser: create the widget with capture=\"browser\" (or use `emolib live --stream`)");
  });

  button.addEventListener("click", () => {
    progress(0, 1);
    if (model.get("backend") === "browser") {
      recordInBrowser();
    } else {
      model.set({ status: "recording", error: "", message: "recording on the kernel's machine\u2026" });
      model.save_changes();
      model.send({ type: "record" });
    }
  });
  model.on("msg:custom", (message) => {
    if (message && message.type === "progress") progress(message.elapsed, message.seconds);
    if (message && message.type === "update") showUpdate(message.update);
  });
  for (const name of ["status", "message", "error", "received", "result_text", "result_png", "result", "page_stats"]) {
    model.on(`change:${name}`, update);
  }
  update();
  return () => { stopStreaming(); if (imageUrl) URL.revokeObjectURL(imageUrl); };
}

export default { render };
