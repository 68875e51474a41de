// Where the network runs: a port of pconv_hf/windows.py. planNativeWindows is plan_native_windows (inpaint()'s
// default strategy, "native"); planWindows is plan_windows (strategy="crop"). A window is
// {top, left, height, width, scale, holeWidth}: a box of the photo filled at scale (1 = the photo's own pixels).
import { chamferDistance, dilateSquare, labelComponents } from "./imageops.js";

export const MAX_WINDOWS = 256;
export const DEFAULT_REACH = 64;
export const DEFAULT_MAX_PIXELS = 1_500_000;
export const DEFAULT_MARGIN = 64;
export const REFINE_BAND = 0.5;
const GROUP_GAP = 16; // hole_regions' gap

function overlap(a, b) {
  return a.top < b.top + b.height && b.top < a.top + a.height && a.left < b.left + b.width && b.left < a.left + a.width;
}

/** windows._padded_box: the region grown by pad on every side, at least minSide a side, clipped to the photo. */
function paddedBox({ top, left, bottom, right }, pad, minSide, height, width) {
  pad = Math.ceil(pad);
  const winHeight = Math.min(height, Math.max(bottom - top + 2 * pad, Math.ceil(minSide)));
  const winWidth = Math.min(width, Math.max(right - left + 2 * pad, Math.ceil(minSide)));
  return {
    top: Math.min(Math.max(Math.floor((top + bottom - winHeight) / 2), 0), height - winHeight),
    left: Math.min(Math.max(Math.floor((left + right - winWidth) / 2), 0), width - winWidth),
    height: winHeight,
    width: winWidth,
  };
}

/** windows._merge_overlapping: window(region) of every region; two regions whose windows overlap become one
 * (union), until no windows overlap. Regions and windows keep their order. */
function mergeOverlapping(regions, window, union) {
  regions = [...regions];
  const windows = regions.map(window);
  let merged = true;
  while (merged) {
    merged = false;
    for (let i = 0; i < windows.length && !merged; i++) {
      for (let j = i + 1; j < windows.length; j++) {
        if (!overlap(windows[i], windows[j])) continue;
        regions[i] = union(regions[i], regions[j]);
        regions.splice(j, 1);
        windows.splice(j, 1);
        windows[i] = window(regions[i]);
        merged = true;
        break;
      }
    }
  }
  return windows;
}

function unionBounds(a, b) {
  return {
    top: Math.min(a.top, b.top), left: Math.min(a.left, b.left),
    bottom: Math.max(a.bottom, b.bottom), right: Math.max(a.right, b.right),
  };
}

/** Gathers, per label, the tight bounds {top, left, bottom, right} of its hole pixels (null: none) and the largest
 * distance at one of them; add(index, label) takes one pixel. */
class HoleStats {
  constructor(hole, width, distance) {
    Object.assign(this, { hole, width, distance, bounds: [null], largest: [0] });
  }

  add(index, label) {
    if (!this.hole[index]) return;
    while (this.bounds.length <= label) {
      this.bounds.push(null);
      this.largest.push(0);
    }
    const y = Math.floor(index / this.width);
    const x = index - y * this.width;
    const box = this.bounds[label];
    if (box === null) this.bounds[label] = { top: y, left: x, bottom: y + 1, right: x + 1 };
    else {
      box.top = Math.min(box.top, y);
      box.left = Math.min(box.left, x);
      box.bottom = Math.max(box.bottom, y + 1);
      box.right = Math.max(box.right, x + 1);
    }
    this.largest[label] = Math.max(this.largest[label], this.distance[index]);
  }
}

/** Tight bounds of the hole pixels inside box {top, left, bottom, right}, or null when there are none. */
function holeBounds(hole, width, box) {
  let bounds = null;
  for (let y = box.top; y < box.bottom; y++) {
    for (let x = box.left; x < box.right; x++) {
      if (!hole[y * width + x]) continue;
      if (bounds === null) bounds = { top: y, left: x, bottom: y + 1, right: x + 1 };
      bounds.left = Math.min(bounds.left, x);
      bounds.right = Math.max(bounds.right, x + 1);
      bounds.bottom = y + 1;
    }
  }
  return bounds;
}

/**
 * windows.hole_regions: groups of holes closer than gap pixels, each {top, left, bottom, right, holeWidth}: the
 * box bounds the group's hole pixels, holeWidth is twice the largest chamfer distance from one to a known pixel.
 */
export function holeRegions(hole, height, width, gap = GROUP_GAP) {
  const distance = chamferDistance(hole, height, width);
  const grouped = gap > 1 ? dilateSquare(hole, height, width, gap) : hole;
  let stats = new HoleStats(hole, width, distance);
  const groups = labelComponents(grouped, height, width, MAX_WINDOWS, (index, label) => stats.add(index, label));
  if (groups === null) {
    // A speckled mask (more than MAX_WINDOWS groups): one group.
    stats = new HoleStats(hole, width, distance);
    for (let index = 0; index < height * width; index++) stats.add(index, 1);
  }
  const regions = [];
  for (let label = 1; label < stats.bounds.length; label++) {
    if (stats.bounds[label] !== null) regions.push({ ...stats.bounds[label], holeWidth: 2 * stats.largest[label] });
  }
  return regions;
}

/**
 * windows.plan_native_windows: one window at scale 1 for a photo no bigger than minSide a side; otherwise
 * non-overlapping windows that cover every hole pixel, each at the scale min(1, reach / hole width), lowered
 * until the window (its group's box plus margin working pixels, at least minSide working pixels a side) holds at
 * most maxPixels working pixels; the whole photo when they would cover it.
 * @param {Uint8Array} hole 1 = fill, height * width
 * @param {object} options reach, maxPixels, margin, minSide (inpaint() passes the model's sample_size)
 */
export function planNativeWindows(hole, height, width, options = {}) {
  const { reach = DEFAULT_REACH, maxPixels = DEFAULT_MAX_PIXELS, margin = DEFAULT_MARGIN, minSide = 256 } = options;
  const window = (region) => {
    let scale = region.holeWidth > 0 ? Math.min(1.0, reach / region.holeWidth) : 1.0;
    let box;
    for (let i = 0; i < 8; i++) {
      box = paddedBox(region, margin / scale, minSide / scale, height, width);
      const excess = (((box.height * box.width) * scale) * scale) / maxPixels;
      if (excess <= 1.0) break;
      scale /= Math.sqrt(excess) * 1.01;
    }
    return { ...box, scale, holeWidth: region.holeWidth };
  };
  const union = (a, b) => ({ ...unionBounds(a, b), holeWidth: Math.max(a.holeWidth, b.holeWidth) });
  const regions = holeRegions(hole, height, width);
  // windows._fits_training_size: a photo no bigger than the training crops is filled whole at its own scale.
  if (regions.length && Math.max(height, width) <= minSide) {
    return [{ top: 0, left: 0, height, width, scale: 1.0, holeWidth: Math.max(...regions.map((r) => r.holeWidth)) }];
  }
  const windows = mergeOverlapping(regions, window, union);
  const area = windows.reduce((sum, w) => sum + w.height * w.width, 0);
  if (area < height * width) return windows;
  const holeWidth = Math.max(0, ...windows.map((w) => w.holeWidth));
  const scale = Math.min(1.0, holeWidth > 0 ? reach / holeWidth : 1.0, Math.sqrt(maxPixels / (height * width)));
  return [{ top: 0, left: 0, height, width, scale, holeWidth }];
}

const MAX_SPLIT_DEPTH = 8; // windows._MAX_SPLIT_DEPTH
const SPLIT_GAIN = 0.9; // windows._SPLIT_GAIN

function extent(values) {
  let low = Infinity;
  let high = -Infinity;
  for (const v of values) {
    if (v < low) low = v;
    if (v > high) high = v;
  }
  return [low, high];
}

/**
 * windows.refine_boxes: where the coarse-to-fine pass runs the network at scale to refill band (1 = a hole pixel
 * along a downscaled window's hole edge, height * width). Boxes of the band's array, each {top, left, height,
 * width, owned} with owned (height * width, 1 = refilled here): every band pixel is refilled by exactly one box.
 * A box is its band pixels' bounds plus margin working pixels (at least minSide a side), split in two across its
 * longer side while the halves' boxes hold less than SPLIT_GAIN of its pixels.
 */
export function refineBoxes(band, height, width, scale, options = {}) {
  const { margin = DEFAULT_MARGIN, minSide = 256 } = options;
  const pad = margin / scale;
  const side = minSide / scale;
  let count = 0;
  for (let i = 0; i < band.length; i++) if (band[i]) count++;
  if (count === 0) return [];
  const rows = new Int32Array(count);
  const cols = new Int32Array(count);
  for (let i = 0, k = 0; i < band.length; i++) {
    if (!band[i]) continue;
    rows[k] = Math.floor(i / width);
    cols[k++] = i % width;
  }
  const boxOf = (rs, cs) => {
    const [top, bottom] = extent(rs);
    const [left, right] = extent(cs);
    return paddedBox({ top, left, bottom: bottom + 1, right: right + 1 }, pad, side, height, width);
  };
  const split = (rs, cs, depth) => {
    const box = boxOf(rs, cs);
    const whole = [{ box, rs, cs }];
    if (depth === MAX_SPLIT_DEPTH) return whole;
    const [rowLow, rowHigh] = extent(rs);
    const [colLow, colHigh] = extent(cs);
    const along = rowHigh - rowLow >= colHigh - colLow ? rs : cs;
    const middle = Math.floor((along === rs ? rowLow + rowHigh : colLow + colHigh) / 2);
    let first = 0;
    for (const v of along) if (v <= middle) first++;
    if (first === along.length) return whole; // one row or column: nothing to split
    const parts = [[new Int32Array(first), new Int32Array(first)], [new Int32Array(along.length - first), new Int32Array(along.length - first)]];
    const next = [0, 0];
    for (let i = 0; i < along.length; i++) {
      const half = along[i] <= middle ? 0 : 1;
      parts[half][0][next[half]] = rs[i];
      parts[half][1][next[half]++] = cs[i];
    }
    const halves = [...split(...parts[0], depth + 1), ...split(...parts[1], depth + 1)];
    const area = halves.reduce((sum, h) => sum + h.box.height * h.box.width, 0);
    return area < SPLIT_GAIN * box.height * box.width ? halves : whole;
  };
  return split(rows, cols, 0).map(({ box, rs, cs }) => {
    const owned = new Uint8Array(box.height * box.width);
    for (let i = 0; i < rs.length; i++) owned[(rs[i] - box.top) * box.width + (cs[i] - box.left)] = 1;
    return { ...box, owned };
  });
}

/**
 * windows.plan_windows + inpainting._at_resolution (strategy="crop"): square windows of at least context times
 * their hole region's longer side (and at least resolution), each downscaled so its longer side is at most
 * resolution; holes closer than resolution / 8 grouped; the whole photo when the windows would cover it.
 */
export function planWindows(hole, height, width, resolution, context = 2.0) {
  const atResolution = (box) => ({ ...box, scale: Math.min(1.0, resolution / Math.max(box.height, box.width)), holeWidth: 0 });
  const whole = [atResolution({ top: 0, left: 0, height, width })];
  const gap = Math.max(1, Math.floor(resolution / 8));
  const groups = labelComponents(dilateSquare(hole, height, width, gap), height, width, MAX_WINDOWS);
  if (groups === null) return whole;
  // As plan_windows: the bounds of every hole pixel inside a group's box (a neighbour group's too).
  const regions = groups.map((box) => holeBounds(hole, width, box)).filter(Boolean);
  const window = (region) => {
    const side = Math.max(resolution, Math.ceil(context * Math.max(region.bottom - region.top, region.right - region.left)));
    return paddedBox(region, 0, side, height, width);
  };
  const boxes = mergeOverlapping(regions, window, unionBounds);
  const area = boxes.reduce((sum, w) => sum + w.height * w.width, 0);
  return area >= height * width ? whole : boxes.map(atResolution);
}
