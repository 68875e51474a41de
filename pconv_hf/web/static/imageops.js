// Pixel operations that mirror the OpenCV and NumPy calls of pconv_hf/windows.py and pconv_hf/inpainting.py:
// cv2.dilate, cv2.connectedComponentsWithStats (its label order), cv2.distanceTransform(DIST_L2, 5),
// cv2.resize INTER_AREA and INTER_CUBIC, and NumPy's float32 rounding.
// Images are interleaved Float32Array (height * width * channels); masks are Uint8Array (height * width, 1 = set).
// The resizers stream rows, so a window of a 40-MP photo never needs a float copy at the photo's size.

const f32 = Math.fround;

/** NumPy's rint / Python's round: halves go to the even neighbour. */
export function roundHalfEven(value) {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** A float32 value in [0, 1] as a byte: np.clip(np.rint(value * 255), 0, 255) in float32. */
export function toByte(value) {
  return Math.min(Math.max(roundHalfEven(f32(value * 255)), 0), 255);
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

/**
 * The 8-connected components of a mask, numbered as cv2.connectedComponentsWithStats numbers them: by the first
 * 2x2 block (in raster order of blocks) that holds one of their pixels. visit(index, label) is called for every
 * pixel of every component (labels from 1), so that callers gather what they need without a label image.
 * @returns {object[] | null} each label's bounds {top, left, bottom, right} (exclusive ends), or null when there
 *   are more than maxCount components
 */
export function labelComponents(mask, height, width, maxCount = Infinity, visit = () => {}) {
  const seen = new Uint8Array(height * width);
  const boxes = [];
  const stack = [];
  const flood = (start) => {
    if (!mask[start] || seen[start]) return true;
    if (boxes.length >= maxCount) return false;
    const box = { top: height, left: width, bottom: 0, right: 0 };
    const label = boxes.length + 1;
    boxes.push(box);
    seen[start] = 1;
    stack.push(start);
    while (stack.length) {
      const index = stack.pop();
      visit(index, label);
      const y = Math.floor(index / width);
      const x = index - y * width;
      if (y < box.top) box.top = y;
      if (y + 1 > box.bottom) box.bottom = y + 1;
      if (x < box.left) box.left = x;
      if (x + 1 > box.right) box.right = x + 1;
      for (let ny = Math.max(0, y - 1); ny <= Math.min(height - 1, y + 1); ny++) {
        for (let nx = Math.max(0, x - 1); nx <= Math.min(width - 1, x + 1); nx++) {
          const next = ny * width + nx;
          if (mask[next] && !seen[next]) {
            seen[next] = 1;
            stack.push(next);
          }
        }
      }
    }
    return true;
  };
  for (let by = 0; by < height; by += 2) {
    for (let bx = 0; bx < width; bx += 2) {
      for (let y = by; y < Math.min(by + 2, height); y++) {
        for (let x = bx; x < Math.min(bx + 2, width); x++) if (!flood(y * width + x)) return null;
      }
    }
  }
  return boxes;
}

// cv2.distanceTransform(mask, DIST_L2, 5) is OpenCV's 5x5 chamfer distance (steps of 1, 1.4 and 2.1969 pixels,
// summed in float32), not the exact Euclidean one: a disc of radius 100 has 98.66 at its centre.
const HV_DIST = 1;
const DIAG_DIST = f32(1.4);
const LONG_DIST = f32(2.1969);
const INIT_DIST0 = 3.4028234663852886e38; // FLT_MAX: the area outside the image never counts

/**
 * cv2.distanceTransform(mask, cv2.DIST_L2, 5): for every set pixel the chamfer distance to the nearest unset
 * pixel (pixels outside the image do not count), as a Float32Array of height * width values.
 */
export function chamferDistance(mask, height, width) {
  const border = 2;
  const step = width + 2 * border;
  const temp = new Float32Array((height + 2 * border) * step);
  temp.fill(INIT_DIST0, 0, border * step);
  temp.fill(INIT_DIST0, (height + border) * step);
  for (let i = 0; i < height; i++) {
    const row = (i + border) * step + border;
    const source = i * width;
    for (let j = 0; j < border; j++) temp[row - j - 1] = temp[row + width + j] = INIT_DIST0;
    for (let j = 0; j < width; j++) {
      const k = row + j;
      if (!mask[source + j]) {
        temp[k] = 0;
        continue;
      }
      temp[k] = Math.min(
        f32(temp[k - 2 * step - 1] + LONG_DIST), f32(temp[k - 2 * step + 1] + LONG_DIST),
        f32(temp[k - step - 2] + LONG_DIST), f32(temp[k - step - 1] + DIAG_DIST), f32(temp[k - step] + HV_DIST),
        f32(temp[k - step + 1] + DIAG_DIST), f32(temp[k - step + 2] + LONG_DIST), f32(temp[k - 1] + HV_DIST),
      );
    }
  }
  for (let i = height - 1; i >= 0; i--) {
    const row = (i + border) * step + border;
    for (let j = width - 1; j >= 0; j--) {
      const k = row + j;
      const t0 = temp[k];
      if (t0 <= HV_DIST) continue;
      temp[k] = Math.min(
        t0, f32(temp[k + 2 * step + 1] + LONG_DIST), f32(temp[k + 2 * step - 1] + LONG_DIST),
        f32(temp[k + step + 2] + LONG_DIST), f32(temp[k + step + 1] + DIAG_DIST), f32(temp[k + step] + HV_DIST),
        f32(temp[k + step - 1] + DIAG_DIST), f32(temp[k + step - 2] + LONG_DIST), f32(temp[k + 1] + HV_DIST),
      );
    }
  }
  // Pack the rows to the front (each row moves to a lower index); the view keeps the one buffer.
  for (let i = 0; i < height; i++) {
    const from = (i + border) * step + border;
    temp.copyWithin(i * width, from, from + width);
  }
  return temp.subarray(0, height * width);
}

// --- resizing --------------------------------------------------------------------------------------------------

/** OpenCV's computeResizeAreaTab: for each output index its source indices and float weights (partial cells
 * under 1e-3 of a pixel are dropped). */
function areaSpans(sourceSize, targetSize) {
  const scale = 1 / (targetSize / sourceSize);
  const spans = [];
  for (let d = 0; d < targetSize; d++) {
    const from = d * scale;
    const to = from + scale;
    const cell = Math.min(scale, sourceSize - from);
    let end = Math.min(Math.floor(to), sourceSize - 1);
    const first = Math.min(Math.ceil(from), end);
    const indices = [];
    const weights = [];
    if (first - from > 1e-3) {
      indices.push(first - 1);
      weights.push(f32((first - from) / cell));
    }
    for (let s = first; s < end; s++) {
      indices.push(s);
      weights.push(f32(1 / cell));
    }
    if (to - end > 1e-3) {
      indices.push(end);
      weights.push(f32(Math.min(Math.min(to - end, 1), cell) / cell));
    }
    spans.push({ indices, weights });
  }
  return spans;
}

/**
 * cv2.resize(image, (outWidth, outHeight), interpolation=cv2.INTER_AREA) of a float image whose rows come from
 * readRow(y, buffer) (fills buffer, width * channels floats), in OpenCV's float32 order of operations.
 * @returns {Float32Array} outHeight * outWidth * channels
 */
export function resizeAreaRows(readRow, height, width, channels, outHeight, outWidth) {
  const xs = areaSpans(width, outWidth);
  const ys = areaSpans(height, outHeight);
  const source = new Float32Array(width * channels);
  const across = new Float32Array(outWidth * channels);
  const out = new Float32Array(outHeight * outWidth * channels);
  const rowWidth = outWidth * channels;
  for (let dy = 0; dy < outHeight; dy++) {
    const { indices: rows, weights: betas } = ys[dy];
    const sum = out.subarray(dy * rowWidth, (dy + 1) * rowWidth);
    for (let r = 0; r < rows.length; r++) {
      readRow(rows[r], source);
      across.fill(0);
      for (let dx = 0; dx < outWidth; dx++) {
        const { indices, weights } = xs[dx];
        for (let k = 0; k < indices.length; k++) {
          const s = indices[k] * channels;
          for (let c = 0; c < channels; c++) {
            across[dx * channels + c] = f32(across[dx * channels + c] + f32(source[s + c] * weights[k]));
          }
        }
      }
      const beta = betas[r];
      if (r === 0) for (let i = 0; i < rowWidth; i++) sum[i] = f32(beta * across[i]);
      else for (let i = 0; i < rowWidth; i++) sum[i] = f32(sum[i] + f32(beta * across[i]));
    }
  }
  return out;
}

/** cv2.resize(mask.astype(float32), (outWidth, outHeight), INTER_AREA) > 0 for a mask whose rows come from
 * readRow(y, buffer): an output pixel is set when any source pixel under it is. */
export function resizeMaskAnyRows(readRow, height, width, outHeight, outWidth) {
  const xs = areaSpans(width, outWidth);
  const ys = areaSpans(height, outHeight);
  const source = new Uint8Array(width);
  const out = new Uint8Array(outHeight * outWidth);
  for (let dy = 0; dy < outHeight; dy++) {
    for (const y of ys[dy].indices) {
      readRow(y, source);
      for (let dx = 0; dx < outWidth; dx++) {
        const target = dy * outWidth + dx;
        if (out[target]) continue;
        const { indices } = xs[dx];
        for (let k = 0; k < indices.length; k++) {
          if (source[indices[k]]) {
            out[target] = 1;
            break;
          }
        }
      }
    }
  }
  return out;
}

/** OpenCV's bicubic taps (A = -0.75, float32 coefficients) and replicated-border source indices along one axis. */
function cubicTaps(sourceSize, targetSize) {
  const scale = 1 / (targetSize / sourceSize);
  const A = f32(-0.75);
  const taps = [];
  for (let d = 0; d < targetSize; d++) {
    let x = f32((d + 0.5) * scale - 0.5);
    const s = Math.floor(x);
    x = f32(x - s);
    const x1 = f32(x + 1);
    const y = f32(1 - x);
    const c0 = f32(f32(f32(f32(f32(f32(A * x1) - f32(5 * A)) * x1) + f32(8 * A)) * x1) - f32(4 * A));
    const c1 = f32(f32(f32(f32(f32(f32(A + 2) * x) - f32(A + 3)) * x) * x) + 1);
    const c2 = f32(f32(f32(f32(f32(f32(A + 2) * y) - f32(A + 3)) * y) * y) + 1);
    const weights = [c0, c1, c2, f32(f32(f32(1 - c0) - c1) - c2)];
    const indices = [-1, 0, 1, 2].map((k) => Math.min(Math.max(s + k, 0), sourceSize - 1));
    taps.push({ indices, weights });
  }
  return taps;
}

/**
 * Rows of np.clip(cv2.resize(image, (outWidth, outHeight), interpolation=cv2.INTER_CUBIC), 0, 1) for a float
 * image, one at a time: row(dy) returns a reused Float32Array of outWidth * channels. The source rows it needs are
 * resampled across once and kept while they are in reach, so rows read in order cost one pass.
 */
export class CubicRows {
  constructor(image, height, width, channels, outHeight, outWidth) {
    Object.assign(this, { image, width, channels, outWidth });
    this.xs = cubicTaps(width, outWidth);
    this.ys = cubicTaps(height, outHeight);
    this.cache = new Map(); // source row -> that row resampled across
    this.out = new Float32Array(outWidth * channels);
  }

  across(y) {
    let row = this.cache.get(y);
    if (row) return row;
    const { image, width, channels, outWidth, xs } = this;
    row = this.cache.size >= 8 ? this.recycle(y) : new Float32Array(outWidth * channels);
    const base = y * width * channels;
    for (let dx = 0; dx < outWidth; dx++) {
      const { indices, weights } = xs[dx];
      for (let c = 0; c < channels; c++) {
        let v = f32(image[base + indices[0] * channels + c] * weights[0]);
        for (let k = 1; k < 4; k++) v = f32(v + f32(image[base + indices[k] * channels + c] * weights[k]));
        row[dx * channels + c] = v;
      }
    }
    this.cache.set(y, row);
    return row;
  }

  /** The buffer of the cached row farthest from y, taken out of the cache. */
  recycle(y) {
    let far = null;
    for (const key of this.cache.keys()) if (far === null || Math.abs(key - y) > Math.abs(far - y)) far = key;
    const row = this.cache.get(far);
    this.cache.delete(far);
    return row;
  }

  row(dy) {
    const { indices, weights } = this.ys[dy];
    const rows = indices.map((y) => this.across(y));
    const out = this.out;
    for (let i = 0; i < out.length; i++) {
      let v = f32(rows[0][i] * weights[0]);
      for (let k = 1; k < 4; k++) v = f32(v + f32(rows[k][i] * weights[k]));
      out[i] = Math.min(Math.max(v, 0), 1);
    }
    return out;
  }
}
