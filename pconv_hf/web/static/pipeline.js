// inpaint(model, image, mask, strategy="crop") of pconv_hf/inpainting.py, with the network as a callback:
// windows around the holes, INTER_AREA downscale to the working resolution (any pixel touching the hole stays
// hole), padding to a multiple of 2**layer_size marked as hole, cubic upscale, and only hole pixels composited.
import { resizeArea, resizeCubicClipped, resizeMaskAny, roundHalfEven } from "./imageops.js";
import { planWindows } from "./windows.js";

export const BATCH_SIZE = 8; // inpaint()'s default: windows of one batch share one padded canvas

function cropWindow(rgba, hole, width, box) {
  const rgb = new Float32Array(box.height * box.width * 3);
  const mask = new Uint8Array(box.height * box.width);
  for (let y = 0; y < box.height; y++) {
    for (let x = 0; x < box.width; x++) {
      const source = (box.top + y) * width + box.left + x;
      const target = y * box.width + x;
      for (let c = 0; c < 3; c++) rgb[target * 3 + c] = rgba[source * 4 + c] / 255;
      mask[target] = hole[source];
    }
  }
  return { rgb, mask };
}

/** A window at the network's scale: {rgb, mask, height, width} (Python's _predict_windows, first loop). */
function prepareWindow(rgba, hole, width, box, resolution) {
  let { rgb, mask } = cropWindow(rgba, hole, width, box);
  const scale = Math.min(1, resolution / Math.max(box.height, box.width));
  if (scale >= 1) return { rgb, mask, height: box.height, width: box.width };
  const outWidth = Math.max(1, roundHalfEven(box.width * scale));
  const outHeight = Math.max(1, roundHalfEven(box.height * scale));
  rgb = resizeArea(rgb, box.height, box.width, 3, outHeight, outWidth);
  mask = resizeMaskAny(mask, box.height, box.width, outHeight, outWidth);
  return { rgb, mask, height: outHeight, width: outWidth };
}

/** NCHW inputs of one window on a canvas of canvasHeight x canvasWidth; the padding is hole (valid = 0). */
function toTensors(window, canvasHeight, canvasWidth) {
  const plane = canvasHeight * canvasWidth;
  const image = new Float32Array(3 * plane);
  const valid = new Float32Array(plane);
  for (let y = 0; y < window.height; y++) {
    for (let x = 0; x < window.width; x++) {
      const source = y * window.width + x;
      const target = y * canvasWidth + x;
      for (let c = 0; c < 3; c++) image[c * plane + target] = window.rgb[source * 3 + c];
      valid[target] = window.mask[source] ? 0 : 1;
    }
  }
  return { image, valid };
}

/** The network's output (NCHW, canvas-sized) for one window as an interleaved RGB prediction at the box's size. */
function toPrediction(output, window, canvasWidth, canvasHeight, box) {
  const plane = canvasHeight * canvasWidth;
  let rgb = new Float32Array(window.height * window.width * 3);
  for (let y = 0; y < window.height; y++) {
    for (let x = 0; x < window.width; x++) {
      for (let c = 0; c < 3; c++) {
        const value = output[c * plane + y * canvasWidth + x];
        rgb[(y * window.width + x) * 3 + c] = Math.min(Math.max(value, 0), 1);
      }
    }
  }
  if (window.height !== box.height || window.width !== box.width) {
    rgb = resizeCubicClipped(rgb, window.height, window.width, 3, box.height, box.width);
  }
  return rgb;
}

function compose(result, hole, width, box, prediction) {
  for (let y = 0; y < box.height; y++) {
    for (let x = 0; x < box.width; x++) {
      const pixel = (box.top + y) * width + box.left + x;
      if (!hole[pixel]) continue;
      const source = (y * box.width + x) * 3;
      for (let c = 0; c < 3; c++) {
        result[pixel * 4 + c] = Math.min(Math.max(roundHalfEven(prediction[source + c] * 255), 0), 255);
      }
    }
  }
}

/**
 * Fill the hole of an RGBA photo.
 * @param {Uint8ClampedArray} rgba height * width * 4; alpha is kept
 * @param {Uint8Array} hole height * width, 1 = fill
 * @param {object} options resolution, multiple (2**layer_size), context, and
 *   run(image, valid, canvasHeight, canvasWidth) -> Promise<Float32Array> (the network, batch of one),
 *   onProgress(done, total)
 * @returns {Promise<{rgba: Uint8ClampedArray, windows: object[]}>}
 */
export async function fillHoles(rgba, hole, height, width, options) {
  const { resolution, multiple, run, context = 2.0, onProgress = () => {} } = options;
  const result = new Uint8ClampedArray(rgba);
  if (!hole.some((value) => value)) return { rgba: result, windows: [] };
  const boxes = planWindows(hole, height, width, resolution, context);
  onProgress(0, boxes.length);
  for (let start = 0; start < boxes.length; start += BATCH_SIZE) {
    const chunk = boxes.slice(start, start + BATCH_SIZE);
    const windows = chunk.map((box) => prepareWindow(rgba, hole, width, box, resolution));
    const canvasHeight = Math.max(multiple, Math.ceil(Math.max(...windows.map((w) => w.height)) / multiple) * multiple);
    const canvasWidth = Math.max(multiple, Math.ceil(Math.max(...windows.map((w) => w.width)) / multiple) * multiple);
    for (let i = 0; i < chunk.length; i++) {
      const { image, valid } = toTensors(windows[i], canvasHeight, canvasWidth);
      const output = await run(image, valid, canvasHeight, canvasWidth);
      compose(result, hole, width, chunk[i], toPrediction(output, windows[i], canvasWidth, canvasHeight, chunk[i]));
      onProgress(start + i + 1, boxes.length);
    }
  }
  return { rgba: result, windows: boxes };
}
