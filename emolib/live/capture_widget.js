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

const ERROR_HELP = {
  NotAllowedError: "permission denied: allow camera and microphone access for this page (address bar) and press Record again",
  SecurityError: "permission denied by the browser's security settings",
  NotFoundError: "no camera or microphone found: plug one in, or use capture=\"local\" or \"file\"",
  NotReadableError: "the camera or microphone is busy (used by another application?)",
  OverconstrainedError: "no camera or microphone matches the requested settings",
  AbortError: "the browser aborted the capture",
};

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

async function recordAudio(stream, seconds, onProgress) {
  if (!stream.getAudioTracks().length) return null;
  const Context = window.AudioContext || window.webkitAudioContext;
  const context = new Context();
  await context.resume();
  const rate = context.sampleRate;
  const wanted = Math.round(seconds * rate);
  const source = context.createMediaStreamSource(stream);
  const processor = context.createScriptProcessor(4096, 1, 1);
  const mute = context.createGain();
  mute.gain.value = 0;
  const chunks = [];
  let collected = 0;
  processor.onaudioprocess = (event) => {
    if (collected >= wanted) return;
    const data = new Float32Array(event.inputBuffer.getChannelData(0));
    chunks.push(data);
    collected += data.length;
  };
  source.connect(processor);
  processor.connect(mute);
  mute.connect(context.destination);
  const started = performance.now();
  while (collected < wanted) {
    const elapsed = (performance.now() - started) / 1000;
    onProgress(Math.min(elapsed, seconds));
    if (elapsed > seconds + 5) break; // the audio clock stalled: send what arrived
    await sleep(100);
  }
  source.disconnect();
  processor.disconnect();
  await context.close();
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

function render({ model, el }) {
  el.classList.add("emolib-capture");
  const header = element("div", "emolib-header", el);
  const button = element("button", "emolib-record", header, "\u25CF Record");
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
  });
  for (const name of ["status", "message", "error", "received", "result_text", "result_png", "result", "page_stats"]) {
    model.on(`change:${name}`, update);
  }
  update();
  return () => { if (imageUrl) URL.revokeObjectURL(imageUrl); };
}

export default { render };
