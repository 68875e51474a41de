// The page: opening photos and masks, the tools, and the conversation with the worker that runs the network.
import { Editor } from "./editor.js";

const $ = (id) => document.getElementById(id);
const status = $("status");
const progress = $("progress");
const params = new URLSearchParams(location.search);
const state = { ready: false, busy: 0, fillId: 0, name: "photo", shown: null, urls: [], pending: Promise.resolve() };
// The fills of this photo, by the photo state they made (an ImageData of the editor's history): Undo / Redo move
// between states, and the download, the result and the status follow the state shown.
let results = new WeakMap();

const editor = new Editor({
  stage: $("stage"),
  box: $("canvases"),
  photoCanvas: $("photo-canvas"),
  maskCanvas: $("mask-canvas"),
  onChange: refresh,
});

function say(text, { error = false } = {}) {
  status.textContent = text;
  status.classList.toggle("error", error);
}

function showProgress(loaded, total) {
  progress.max = total || 1;
  progress.value = loaded;
}

function refresh() {
  const hasPhoto = Boolean(editor.photo);
  $("inpaint").disabled = !(state.ready && hasPhoto) || state.busy > 0;
  $("mask").disabled = !hasPhoto;
  $("undo").disabled = !editor.canUndo || state.busy > 0;
  $("redo").disabled = !editor.canRedo || state.busy > 0;
  $("clear").disabled = !hasPhoto;
  $("brush").setAttribute("aria-pressed", String(editor.tool === "brush"));
  $("eraser").setAttribute("aria-pressed", String(editor.tool === "eraser"));
  $("size").value = String(editor.size);
  $("zoom-level").textContent = `${Math.round(editor.zoom * 100)}%`;
  $("drop-hint").hidden = hasPhoto;
  showResult();
}

/** The download and the result of the photo state shown (none for a state no fill made); after Undo / Redo, say so. */
function showResult() {
  const result = editor.photo ? results.get(editor.photo) : undefined;
  const download = $("download");
  if (result) {
    download.href = result.url;
    download.download = `${state.name}-filled.png`;
    download.setAttribute("aria-disabled", "false");
    if ($("result").getAttribute("src") !== result.url) $("result").src = result.url;
  } else {
    download.removeAttribute("href");
    download.setAttribute("aria-disabled", "true");
    $("result").removeAttribute("src");
  }
  if (editor.photo === state.shown) return;
  state.shown = editor.photo; // moved by Undo / Redo (new photos and fills set state.shown first)
  say(result
    ? `Redone: ${result.text}. Download the full-size PNG.`
    : "Undone: the photo before the fill is shown (Redo brings the fill back); nothing to download for it.");
}

function unsupported() {
  if (typeof WebAssembly !== "object") return "this browser cannot run WebAssembly";
  if (typeof Worker !== "function") return "this browser has no Web Workers";
  if (typeof createImageBitmap !== "function") return "this browser cannot decode images off-screen (createImageBitmap)";
  return null;
}

// --- decoding ---

/** A file's pixels as ImageData, upright by its EXIF orientation, without colour management (as Pillow reads it). */
async function decode(file, what) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {
      imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none",
    });
  } catch {
    throw new Error(`cannot read ${what} file "${file.name}": not an image this browser decodes`);
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return context.getImageData(0, 0, canvas.width, canvas.height);
}

/** The one rule for a mask file: any nonzero colour channel fills, transparent pixels never do. */
function holeFromMask(image) {
  const { data } = image;
  const hole = new Uint8Array(image.width * image.height);
  for (let i = 0; i < hole.length; i++) {
    const p = i * 4;
    hole[i] = data[p + 3] !== 0 && (data[p] || data[p + 1] || data[p + 2]) ? 1 : 0;
  }
  return hole;
}

/** Run one loading step at a time; Inpaint waits for all of them. */
function queue(step) {
  state.busy += 1;
  refresh();
  state.pending = state.pending.then(step).catch((error) => say(error.message, { error: true })).finally(() => {
    state.busy -= 1;
    refresh();
  });
  return state.pending;
}

function openPhoto(file) {
  return queue(async () => {
    say(`Reading ${file.name}…`);
    const photo = await decode(file, "photo");
    state.name = file.name.replace(/\.[^.]+$/, "") || "photo";
    for (const url of state.urls.splice(0)) URL.revokeObjectURL(url);
    results = new WeakMap();
    state.shown = photo;
    editor.setPhoto(photo);
    $("photo-name").textContent = file.name;
    $("mask-name").textContent = "";
    say(`${file.name}: ${photo.width} × ${photo.height}. Paint over what should go, or load a mask.`);
  });
}

function openMask(file) {
  return queue(async () => {
    if (!editor.photo) throw new Error("open a photo before its mask");
    const mask = await decode(file, "mask");
    if (mask.width !== editor.width || mask.height !== editor.height) {
      throw new Error(`mask size ${mask.width}x${mask.height} (WxH) does not match photo size ${editor.width}x${editor.height}`);
    }
    editor.setHole(holeFromMask(mask));
    $("mask-name").textContent = file.name;
    say(`Mask ${file.name} loaded (white = fill).`);
  });
}

// --- the worker ---

const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
const fills = new Map();

worker.onmessage = ({ data }) => {
  if (data.type === "progress") {
    showProgress(data.loaded, data.total);
    const mb = (bytes) => (bytes / 1e6).toFixed(1);
    if (data.stage === "download") say(`Downloading the model: ${mb(data.loaded)} of ${mb(data.total)} MB`);
    else if (data.stage === "cache") say("Model found in this browser's cache");
    else if (data.stage === "session") say("Preparing the network…");
    else if (data.stage === "fill") {
      // Counted from 1: the pass running now (0 passes done is "pass 1 of 2"), then the windows pasted back.
      say(data.loaded < data.total ? `Inpainting: network pass ${data.loaded + 1} of ${data.total}…` : "Inpainting: putting the result together…");
    }
  } else if (data.type === "ready") {
    state.ready = true;
    const engine = data.backend === "webgpu" ? "WebGPU" : `wasm, ${data.threads} thread${data.threads === 1 ? "" : "s"}`;
    const origin = data.cached ? "from the browser cache" : data.cacheable ? "downloaded and cached" : "downloaded (not cached: the page needs https or localhost)";
    $("engine").textContent = `Engine: ${engine}${data.isolated ? "" : " (serve with COOP/COEP headers for threads)"}; model ${origin}, ${data.weights} weights.`;
    document.body.dataset.model = data.cached ? "cache" : "network";
    document.body.dataset.backend = data.backend;
    say(editor.photo ? "Ready." : "Ready: open, paste or drop a photo.");
    showProgress(1, 1);
    refresh();
  } else if (data.type === "notice") {
    say(data.text);
  } else if (data.type === "filled" || data.type === "error") {
    const waiting = fills.get(data.id);
    if (waiting) {
      fills.delete(data.id);
      if (data.type === "error") waiting.reject(new Error(data.text));
      else waiting.resolve(data);
    } else if (data.type === "error") {
      say(`The network could not start: ${data.text}`, { error: true });
    }
  }
};
worker.onerror = (event) => say(`The worker failed: ${event.message || "module workers unsupported?"}`, { error: true });

/** inpaint()'s options from the address: ?strategy=crop (default native), &context=, &reach=, &maxPixels=, &refine=0. */
function fillOptions() {
  const options = { strategy: params.get("strategy") || "native" };
  for (const name of ["context", "reach", "maxPixels"]) if (params.has(name)) options[name] = Number(params.get(name));
  if (params.get("refine") === "0") options.refine = false;
  return options;
}

function fillInWorker(photo, hole) {
  const id = ++state.fillId;
  const rgba = new Uint8ClampedArray(photo.data); // a copy: the worker takes it
  return new Promise((resolve, reject) => {
    fills.set(id, { resolve, reject });
    worker.postMessage(
      { type: "fill", id, rgba: rgba.buffer, hole: hole.buffer, height: photo.height, width: photo.width, options: fillOptions() },
      [rgba.buffer, hole.buffer],
    );
  });
}

async function inpaint() {
  await state.pending;
  if (!editor.photo) return;
  const hole = editor.hole();
  if (!hole.some((value) => value)) {
    say("Paint over what should go first (or load a mask: white = fill).", { error: true });
    return;
  }
  state.busy += 1;
  refresh();
  try {
    const photo = editor.photo;
    const done = await fillInWorker(photo, hole);
    const filled = new ImageData(new Uint8ClampedArray(done.rgba), photo.width, photo.height);
    const windows = done.windows.length;
    const text = `filled in ${done.seconds.toFixed(1)} s (${windows} window${windows === 1 ? "" : "s"})`;
    state.shown = filled;
    editor.replacePhoto(filled);
    const blob = await new Promise((resolve) => editor.photoCanvas.toBlob(resolve, "image/png"));
    const url = URL.createObjectURL(blob);
    state.urls.push(url);
    results.set(filled, { url, text });
    // For scripts (tests, benchmarks/bench_web.py): the windows as [top, left, height, width, scale, refine scale]
    // and the worker's fill time; set before the result so that they are there when its src changes.
    document.body.dataset.windows = JSON.stringify(done.windows.map((w) => [w.top, w.left, w.height, w.width, w.scale, w.refine]));
    document.body.dataset.fillSeconds = String(done.seconds);
    showResult();
    say(`${text[0].toUpperCase()}${text.slice(1)}. Download the full-size PNG.`);
  } catch (error) {
    say(`Inpainting failed: ${error.message}`, { error: true });
  } finally {
    state.busy -= 1;
    refresh();
  }
}

// --- wiring ---

// The input is emptied after each choice, so that choosing the same file again reloads it.
for (const [id, open] of [["photo", openPhoto], ["mask", openMask]]) {
  $(id).addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) open(file).finally(() => { event.target.value = ""; });
  });
}
$("inpaint").addEventListener("click", inpaint);
$("brush").addEventListener("click", () => editor.setTool("brush"));
$("eraser").addEventListener("click", () => editor.setTool("eraser"));
$("size").addEventListener("input", (event) => { editor.size = Number(event.target.value); });
$("zoom-in").addEventListener("click", () => editor.setZoom(editor.zoom * 1.25));
$("zoom-out").addEventListener("click", () => editor.setZoom(editor.zoom / 1.25));
$("zoom-fit").addEventListener("click", () => editor.fit());
$("undo").addEventListener("click", () => editor.undo());
$("redo").addEventListener("click", () => editor.redo());
$("clear").addEventListener("click", () => editor.clearMask());
$("stage").addEventListener("wheel", (event) => {
  if (!event.ctrlKey || !editor.photo) return;
  event.preventDefault();
  editor.setZoom(editor.zoom * (event.deltaY < 0 ? 1.1 : 1 / 1.1));
}, { passive: false });
document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement) return;
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && key === "z") {
    event.preventDefault();
    if (event.shiftKey) editor.redo(); else editor.undo();
  } else if ((event.ctrlKey || event.metaKey) && key === "y") {
    event.preventDefault();
    editor.redo();
  } else if (key === "b") editor.setTool("brush");
  else if (key === "e") editor.setTool("eraser");
  else if (key === "+" || key === "=") editor.setZoom(editor.zoom * 1.25);
  else if (key === "-") editor.setZoom(editor.zoom / 1.25);
});
document.addEventListener("paste", (event) => {
  const file = [...(event.clipboardData?.files || [])].find((item) => item.type.startsWith("image/"));
  if (file) openPhoto(file);
});
const stage = $("stage");
stage.addEventListener("dragover", (event) => { event.preventDefault(); stage.classList.add("dragging"); });
stage.addEventListener("dragleave", () => stage.classList.remove("dragging"));
stage.addEventListener("drop", (event) => {
  event.preventDefault();
  stage.classList.remove("dragging");
  const file = [...event.dataTransfer.files].find((item) => item.type.startsWith("image/"));
  if (file) openPhoto(file);
});

const problem = unsupported();
if (problem) {
  say(`Sorry: ${problem}. Use a current Chrome, Edge, Firefox or Safari.`, { error: true });
} else {
  say("Loading the network…");
  worker.postMessage({
    type: "init", backend: params.get("backend") || "auto", threads: Number(params.get("threads") || 0),
  });
}
refresh();
