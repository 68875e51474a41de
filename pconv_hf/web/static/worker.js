// The network in a Web Worker: loads ONNX Runtime Web (WebGPU when an adapter exists, wasm otherwise), the model
// (from Cache Storage after the first visit, with download progress), and fills photos with pipeline.js
// (inpaint()'s native strategy by default, crop on request).
import { fillHoles } from "./pipeline.js";

const CACHE_NAME = "pconv-hf-model";
const here = (path) => new URL(path, import.meta.url).href;
let ort = null;
let session = null;
let manifest = null;

const post = (message, transfer = []) => self.postMessage(message, transfer);

async function hasWebGpu() {
  try {
    return Boolean(self.navigator.gpu && (await self.navigator.gpu.requestAdapter()));
  } catch {
    return false;
  }
}

/** The model bytes: from the cache when this exact file (its hash is in the URL) was downloaded before. */
async function modelBytes(url, total) {
  let cache = null;
  if (self.caches) {
    try {
      cache = await self.caches.open(CACHE_NAME);
    } catch {
      cache = null; // storage blocked (private mode, quota): download every visit
    }
  }
  const hit = cache && (await cache.match(url));
  if (hit) {
    post({ type: "progress", stage: "cache", loaded: total, total });
    return { bytes: new Uint8Array(await hit.arrayBuffer()), cached: true, cacheable: true };
  }
  const response = await fetch(url);
  if (!response.ok) throw new Error(`could not download the model (${url}): HTTP ${response.status}`);
  const reader = response.body.getReader();
  const bytes = new Uint8Array(total);
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.length > total) throw new Error("the model file is larger than model.json says; rebuild");
    bytes.set(value, loaded);
    loaded += value.length;
    post({ type: "progress", stage: "download", loaded, total });
  }
  if (loaded !== total) throw new Error(`the model download stopped at ${loaded} of ${total} bytes; reload`);
  if (cache) {
    for (const request of await cache.keys()) await cache.delete(request); // older models
    await cache.put(url, new Response(bytes, { headers: { "Content-Type": "application/octet-stream" } }));
  }
  return { bytes, cached: false, cacheable: Boolean(cache) };
}

async function loadRuntime(backend) {
  const webgpu = backend === "webgpu" || (backend === "auto" && (await hasWebGpu()));
  ort = await import(here(webgpu ? "./ort/ort.webgpu.min.mjs" : "./ort/ort.wasm.min.mjs"));
  ort.env.wasm.wasmPaths = here("./ort/");
  ort.env.wasm.proxy = false;
  return webgpu;
}

async function init({ backend = "auto", threads = 0 }) {
  if (typeof WebAssembly !== "object") throw new Error("this browser has no WebAssembly; use a current browser");
  const response = await fetch(here("./model.json"), { cache: "no-cache" });
  if (!response.ok) throw new Error(`model.json is missing (HTTP ${response.status}); rebuild the folder`);
  manifest = await response.json();
  const webgpu = await loadRuntime(backend);
  const isolated = self.crossOriginIsolated === true;
  const wanted = threads > 0 ? threads : Math.min(4, self.navigator.hardwareConcurrency || 1);
  ort.env.wasm.numThreads = isolated ? wanted : 1;
  const url = here(`./${manifest.file}?sha256=${manifest.sha256.slice(0, 16)}`);
  const { bytes, cached, cacheable } = await modelBytes(url, manifest.bytes);
  post({ type: "progress", stage: "session", loaded: 0, total: 1 });
  const options = { graphOptimizationLevel: "all" };
  let used = "wasm";
  if (webgpu) {
    try {
      session = await ort.InferenceSession.create(bytes, { ...options, executionProviders: ["webgpu"] });
      used = "webgpu";
    } catch (error) {
      post({ type: "notice", text: `WebGPU could not run the model (${error.message}); using wasm` });
    }
  }
  if (!session) session = await ort.InferenceSession.create(bytes, { ...options, executionProviders: ["wasm"] });
  post({
    type: "ready", backend: used, threads: used === "wasm" ? ort.env.wasm.numThreads : 0, isolated, cached,
    cacheable, weights: manifest.weights, bytes: manifest.bytes,
  });
}

async function run(image, valid, height, width) {
  const feeds = {
    image: new ort.Tensor("float32", image, [1, 3, height, width]),
    mask: new ort.Tensor("float32", valid, [1, 1, height, width]),
  };
  const results = await session.run(feeds);
  const output = results.output;
  const data = output.location === "gpu-buffer" ? await output.getData() : output.data;
  for (const tensor of Object.values(results)) if (tensor.dispose) tensor.dispose();
  return data;
}

async function fill({ id, rgba, hole, height, width, options }) {
  const started = performance.now();
  const result = await fillHoles(new Uint8ClampedArray(rgba), new Uint8Array(hole), height, width, {
    ...options,
    sampleSize: manifest.sample_size,
    multiple: manifest.size_multiple,
    run,
    onProgress: (done, total) => post({ type: "progress", stage: "fill", id, loaded: done, total }),
  });
  const seconds = (performance.now() - started) / 1000;
  post({ type: "filled", id, rgba: result.rgba.buffer, windows: result.windows, seconds }, [result.rgba.buffer]);
}

self.onmessage = async ({ data }) => {
  try {
    if (data.type === "init") await init(data);
    else if (data.type === "fill") await fill(data);
  } catch (error) {
    post({ type: "error", id: data.id, text: error && error.message ? error.message : String(error) });
  }
};
