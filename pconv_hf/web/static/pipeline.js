// inpaint(model, image, mask) of pconv_hf/inpainting.py with the network as a callback: the windows of
// windows.js, each cropped and INTER_AREA-downscaled to its scale (any pixel that touches the hole stays hole),
// padded to a multiple of the model's size_multiple (1, no padding, for any-size exports; padding marked as
// hole), run, upscaled with OpenCV's bicubic; for the native strategy a window filled downscaled then gets its
// hole's edge band refilled at the finest scale at which the window fits the pixel budget, on boxes around the
// band (_refine); only hole pixels are written. Float buffers exist only at the working scale (at most maxPixels
// per window); at the photo's scale rows are streamed.
import { chamferDistance, CubicRows, resizeAreaRows, resizeMaskAnyRows, roundHalfEven, toByte } from "./imageops.js";
import { DEFAULT_MAX_PIXELS, DEFAULT_REACH, planNativeWindows, planWindows, REFINE_BAND, refineBoxes } from "./windows.js";

export const STRATEGIES = ["native", "crop"];

/** The windows inpaint() would fill for this hole (see windows.js), with refine: the scale of the edge-band pass
 * (0 when there is none). */
export function planFill(hole, height, width, options) {
  const { strategy = "native", sampleSize, context = 2.0, reach = DEFAULT_REACH, maxPixels = DEFAULT_MAX_PIXELS } = options;
  if (!STRATEGIES.includes(strategy)) throw new Error(`strategy must be one of ${STRATEGIES.join(", ")}, got "${strategy}"`);
  if (strategy === "crop") {
    return planWindows(hole, height, width, options.resolution || sampleSize, context).map((w) => ({ ...w, refine: 0 }));
  }
  const windows = planNativeWindows(hole, height, width, { reach, maxPixels, minSide: sampleSize });
  return windows.map((w) => {
    const fine = Math.min(1.0, Math.sqrt(maxPixels / (w.height * w.width)));
    return { ...w, refine: options.refine !== false && fine >= 1.5 * w.scale ? fine : 0 };
  });
}

/** NCHW network inputs on a canvas of canvasHeight x canvasWidth; the padding is hole (valid = 0). */
function toTensors(rgb, mask, height, width, canvasHeight, canvasWidth) {
  const plane = canvasHeight * canvasWidth;
  const image = new Float32Array(3 * plane);
  const valid = new Float32Array(plane);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const source = y * width + x;
      const target = y * canvasWidth + x;
      for (let c = 0; c < 3; c++) image[c * plane + target] = rgb[source * 3 + c];
      valid[target] = mask[source] ? 0 : 1;
    }
  }
  return { image, valid };
}

/**
 * The network's fill of one box (inpainting._fill_windows for one window): readRow(y, buffer) gives the box's
 * float RGB rows, readHole(y, buffer) its hole rows. Returns row(y): the fill's row y at the box's size (a reused
 * Float32Array of width * 3, clipped to [0, 1]).
 */
async function predict(readRow, readHole, box, scale, multiple, run) {
  const { height, width } = box;
  let rgb;
  let mask;
  let workHeight = height;
  let workWidth = width;
  if (scale >= 1.0) {
    rgb = new Float32Array(height * width * 3);
    mask = new Uint8Array(height * width);
    for (let y = 0; y < height; y++) {
      readRow(y, rgb.subarray(y * width * 3, (y + 1) * width * 3));
      readHole(y, mask.subarray(y * width, (y + 1) * width));
    }
  } else {
    workWidth = Math.max(1, roundHalfEven(width * scale));
    workHeight = Math.max(1, roundHalfEven(height * scale));
    rgb = resizeAreaRows(readRow, height, width, 3, workHeight, workWidth);
    mask = resizeMaskAnyRows(readHole, height, width, workHeight, workWidth);
  }
  const canvasHeight = Math.max(multiple, Math.ceil(workHeight / multiple) * multiple);
  const canvasWidth = Math.max(multiple, Math.ceil(workWidth / multiple) * multiple);
  const { image, valid } = toTensors(rgb, mask, workHeight, workWidth, canvasHeight, canvasWidth);
  mask = null;
  const output = await run(image, valid, canvasHeight, canvasWidth);
  const plane = canvasHeight * canvasWidth;
  const fill = rgb; // reuse: same size
  for (let y = 0; y < workHeight; y++) {
    for (let x = 0; x < workWidth; x++) {
      for (let c = 0; c < 3; c++) {
        fill[(y * workWidth + x) * 3 + c] = Math.min(Math.max(output[c * plane + y * canvasWidth + x], 0), 1);
      }
    }
  }
  if (workHeight === height && workWidth === width) return (y) => fill.subarray(y * width * 3, (y + 1) * width * 3);
  const rows = new CubicRows(fill, workHeight, workWidth, 3, height, width);
  return (y) => rows.row(y);
}

/** The hole pixels of a box within REFINE_BAND * reach / scale of a known pixel (chamfer distance, as _refine). */
function edgeBand(hole, photoWidth, box, reach, scale) {
  const { top, left, height, width } = box;
  const crop = new Uint8Array(height * width);
  for (let y = 0; y < height; y++) crop.set(hole.subarray((top + y) * photoWidth + left, (top + y) * photoWidth + left + width), y * width);
  const inside = chamferDistance(crop, height, width);
  const limit = Math.fround((REFINE_BAND * reach) / scale); // NumPy compares the float32 distances in float32
  for (let i = 0; i < crop.length; i++) crop[i] = crop[i] && inside[i] <= limit ? 1 : 0;
  return crop;
}

/** Fill one window of the photo and write its hole pixels into result. */
async function fillWindow(rgba, hole, photoWidth, window, result, options) {
  const { multiple, run, reach = DEFAULT_REACH, sampleSize, onRun, onMorePasses } = options;
  const { top, left, width } = window;
  const photoRow = (y, buffer) => {
    let source = ((top + y) * photoWidth + left) * 4;
    for (let x = 0; x < width; x++, source += 4) {
      for (let c = 0; c < 3; c++) buffer[x * 3 + c] = rgba[source + c] / 255;
    }
  };
  const holeRow = (y, buffer) => buffer.set(hole.subarray((top + y) * photoWidth + left, (top + y) * photoWidth + left + width));
  const coarse = await predict(photoRow, holeRow, window, window.scale, multiple, run);
  onRun();
  for (let y = 0; y < window.height; y++) {
    const holeStart = (top + y) * photoWidth + left;
    const row = coarse(y);
    for (let x = 0; x < width; x++) {
      if (hole[holeStart + x]) for (let c = 0; c < 3; c++) result[(holeStart + x) * 4 + c] = toByte(row[x * 3 + c]);
    }
  }
  if (!window.refine) return;
  // The coarse fill inside the hole is known context now; only the band along its edge is refilled, by the
  // network run on boxes around the band (refineBoxes), each writing the band pixels it owns.
  const band = edgeBand(hole, photoWidth, window, reach, window.refine);
  const boxes = refineBoxes(band, window.height, window.width, window.refine, { minSide: sampleSize });
  onMorePasses(boxes.length - 1);
  for (const box of boxes) {
    const filledRow = (y, buffer) => {
      const row = top + box.top + y;
      let source = (row * photoWidth + left + box.left) * 4;
      const fill = coarse(box.top + y);
      for (let x = 0; x < box.width; x++, source += 4) {
        const inHole = hole[row * photoWidth + left + box.left + x];
        for (let c = 0; c < 3; c++) buffer[x * 3 + c] = inHole ? fill[(box.left + x) * 3 + c] : rgba[source + c] / 255;
      }
    };
    const bandRow = (y, buffer) => buffer.set(band.subarray((box.top + y) * width + box.left, (box.top + y) * width + box.left + box.width));
    const fine = await predict(filledRow, bandRow, box, window.refine, multiple, run);
    onRun();
    for (let y = 0; y < box.height; y++) {
      const row = fine(y);
      const target = (top + box.top + y) * photoWidth + left + box.left;
      for (let x = 0; x < box.width; x++) {
        if (box.owned[y * box.width + x]) for (let c = 0; c < 3; c++) result[(target + x) * 4 + c] = toByte(row[x * 3 + c]);
      }
    }
  }
}

/**
 * Fill the hole of an RGBA photo as inpaint(model, photo, mask) does.
 * @param {Uint8ClampedArray} rgba height * width * 4; alpha is kept
 * @param {Uint8Array} hole height * width, 1 = fill
 * @param {object} options sampleSize and multiple (the model's sample_size and 2**layer_size),
 *   run(image, valid, canvasHeight, canvasWidth) -> Promise<Float32Array> (the network, batch of one, NCHW),
 *   strategy ("native" or "crop"), reach, maxPixels, refine (native), context and resolution (crop),
 *   onProgress(done, total)
 * @returns {Promise<{rgba: Uint8ClampedArray, windows: object[]}>}
 */
export async function fillHoles(rgba, hole, height, width, options) {
  const { onProgress = () => {} } = options;
  const result = new Uint8ClampedArray(rgba);
  if (!hole.some((value) => value)) return { rgba: result, windows: [] };
  const windows = planFill(hole, height, width, options);
  // One pass per window and one per refined window's first box; a refined window's other boxes are counted when
  // its band is known.
  let total = windows.reduce((sum, w) => sum + (w.refine ? 2 : 1), 0);
  let done = 0;
  onProgress(done, total);
  const onRun = () => onProgress(++done, total);
  const onMorePasses = (count) => {
    total += count;
  };
  for (const window of windows) await fillWindow(rgba, hole, width, window, result, { ...options, onRun, onMorePasses });
  return { rgba: result, windows };
}
