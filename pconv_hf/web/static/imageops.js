// Pixel operations that mirror the OpenCV calls of pconv_hf/inpainting.py (cv2.dilate,
// cv2.connectedComponentsWithStats, cv2.resize INTER_AREA and INTER_CUBIC) and NumPy's rounding.
// Images are interleaved Float32Array (height * width * channels); masks are Uint8Array (height * width, 1 = set).

/** NumPy's rint / Python's round: halves go to the even neighbour. */
export function roundHalfEven(value) {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** cv2.dilate(mask, ones((size, size))): anchor at size // 2, pixels outside the image never count. */
export function dilateSquare(mask, height, width, size) {
  const anchor = Math.floor(size / 2);
  const rows = new Uint8Array(height * width);
  const prefix = new Int32Array(Math.max(width, height) + 1);
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) prefix[x + 1] = prefix[x] + mask[row + x];
    for (let x = 0; x < width; x++) {
      const lo = Math.max(0, x - anchor);
      const hi = Math.min(width, x - anchor + size);
      rows[row + x] = prefix[hi] - prefix[lo] > 0 ? 1 : 0;
    }
  }
  const out = new Uint8Array(height * width);
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) prefix[y + 1] = prefix[y] + rows[y * width + x];
    for (let y = 0; y < height; y++) {
      const lo = Math.max(0, y - anchor);
      const hi = Math.min(height, y - anchor + size);
      out[y * width + x] = prefix[hi] - prefix[lo] > 0 ? 1 : 0;
    }
  }
  return out;
}

/** Bounding boxes {top, left, bottom, right} (exclusive ends) of the 8-connected components, in raster order
 * of their first pixel (the order OpenCV numbers them). */
export function componentBoxes(mask, height, width) {
  const labels = new Int32Array(height * width);
  const boxes = [];
  const stack = [];
  for (let start = 0; start < height * width; start++) {
    if (!mask[start] || labels[start]) continue;
    const box = { top: height, left: width, bottom: 0, right: 0 };
    const label = boxes.length + 1;
    boxes.push(box);
    labels[start] = label;
    stack.push(start);
    while (stack.length) {
      const index = stack.pop();
      const y = Math.floor(index / width);
      const x = index - y * width;
      if (y < box.top) box.top = y;
      if (y + 1 > box.bottom) box.bottom = y + 1;
      if (x < box.left) box.left = x;
      if (x + 1 > box.right) box.right = x + 1;
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          if (nx < 0 || nx >= width) continue;
          const next = ny * width + nx;
          if (mask[next] && !labels[next]) {
            labels[next] = label;
            stack.push(next);
          }
        }
      }
    }
  }
  return boxes;
}

/** The source spans of cv2.resize(INTER_AREA) along one axis: for each output index, {first, last, weights}
 * (OpenCV's computeResizeAreaTab: partial cells under 1e-3 of a pixel are dropped). */
function areaSpans(sourceSize, targetSize) {
  const scale = 1 / (targetSize / sourceSize);
  const spans = [];
  for (let d = 0; d < targetSize; d++) {
    const from = d * scale;
    const to = from + scale;
    const cell = Math.min(scale, sourceSize - from);
    let first = Math.ceil(from);
    let end = Math.floor(to);
    end = Math.min(end, sourceSize - 1);
    first = Math.min(first, end);
    const indices = [];
    const weights = [];
    if (first - from > 1e-3) {
      indices.push(first - 1);
      weights.push((first - from) / cell);
    }
    for (let s = first; s < end; s++) {
      indices.push(s);
      weights.push(1 / cell);
    }
    if (to - end > 1e-3) {
      indices.push(end);
      weights.push(Math.min(Math.min(to - end, 1), cell) / cell);
    }
    spans.push({ indices, weights });
  }
  return spans;
}

/** cv2.resize(image, (width, height), interpolation=INTER_AREA) for a downscale of a float image. */
export function resizeArea(image, height, width, channels, outHeight, outWidth) {
  const xs = areaSpans(width, outWidth);
  const ys = areaSpans(height, outHeight);
  const rows = new Float32Array(height * outWidth * channels);
  for (let y = 0; y < height; y++) {
    for (let dx = 0; dx < outWidth; dx++) {
      const { indices, weights } = xs[dx];
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let k = 0; k < indices.length; k++) sum += weights[k] * image[(y * width + indices[k]) * channels + c];
        rows[(y * outWidth + dx) * channels + c] = sum;
      }
    }
  }
  const out = new Float32Array(outHeight * outWidth * channels);
  for (let dy = 0; dy < outHeight; dy++) {
    const { indices, weights } = ys[dy];
    for (let i = 0; i < outWidth * channels; i++) {
      let sum = 0;
      for (let k = 0; k < indices.length; k++) sum += weights[k] * rows[indices[k] * outWidth * channels + i];
      out[dy * outWidth * channels + i] = sum;
    }
  }
  return out;
}

/** cv2.resize(hole.astype(float32), size, INTER_AREA) > 0: any pixel touching the hole stays hole. */
export function resizeMaskAny(mask, height, width, outHeight, outWidth) {
  const xs = areaSpans(width, outWidth);
  const ys = areaSpans(height, outHeight);
  const rows = new Uint8Array(height * outWidth);
  for (let y = 0; y < height; y++) {
    for (let dx = 0; dx < outWidth; dx++) {
      const { indices } = xs[dx];
      let any = 0;
      for (let k = 0; k < indices.length && !any; k++) any = mask[y * width + indices[k]];
      rows[y * outWidth + dx] = any ? 1 : 0;
    }
  }
  const out = new Uint8Array(outHeight * outWidth);
  for (let dy = 0; dy < outHeight; dy++) {
    const { indices } = ys[dy];
    for (let dx = 0; dx < outWidth; dx++) {
      let any = 0;
      for (let k = 0; k < indices.length && !any; k++) any = rows[indices[k] * outWidth + dx];
      out[dy * outWidth + dx] = any ? 1 : 0;
    }
  }
  return out;
}

/** OpenCV's bicubic weights (A = -0.75) and clamped source indices along one axis. */
function cubicTaps(sourceSize, targetSize) {
  const scale = 1 / (targetSize / sourceSize);
  const A = -0.75;
  const taps = [];
  for (let d = 0; d < targetSize; d++) {
    let f = Math.fround((d + 0.5) * scale - 0.5);
    const s = Math.floor(f);
    f -= s;
    const c0 = ((A * (f + 1) - 5 * A) * (f + 1) + 8 * A) * (f + 1) - 4 * A;
    const c1 = ((A + 2) * f - (A + 3)) * f * f + 1;
    const c2 = ((A + 2) * (1 - f) - (A + 3)) * (1 - f) * (1 - f) + 1;
    const weights = [c0, c1, c2, 1 - c0 - c1 - c2];
    const indices = [-1, 0, 1, 2].map((k) => Math.min(Math.max(s + k, 0), sourceSize - 1));
    taps.push({ indices, weights });
  }
  return taps;
}

/** np.clip(cv2.resize(image, (width, height), interpolation=INTER_CUBIC), 0, 1) for a float image. */
export function resizeCubicClipped(image, height, width, channels, outHeight, outWidth) {
  const xs = cubicTaps(width, outWidth);
  const ys = cubicTaps(height, outHeight);
  const rows = new Float32Array(height * outWidth * channels);
  for (let y = 0; y < height; y++) {
    for (let dx = 0; dx < outWidth; dx++) {
      const { indices, weights } = xs[dx];
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let k = 0; k < 4; k++) sum += weights[k] * image[(y * width + indices[k]) * channels + c];
        rows[(y * outWidth + dx) * channels + c] = sum;
      }
    }
  }
  const out = new Float32Array(outHeight * outWidth * channels);
  for (let dy = 0; dy < outHeight; dy++) {
    const { indices, weights } = ys[dy];
    for (let i = 0; i < outWidth * channels; i++) {
      let sum = 0;
      for (let k = 0; k < 4; k++) sum += weights[k] * rows[indices[k] * outWidth * channels + i];
      out[dy * outWidth * channels + i] = Math.min(Math.max(sum, 0), 1);
    }
  }
  return out;
}
