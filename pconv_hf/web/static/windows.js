// Where the network looks: a port of plan_windows() in pconv_hf/inpainting.py for inpaint(strategy="crop").
// Kept in its own module so that another planning strategy can be ported beside it (see docs/web.md).
import { componentBoxes, dilateSquare } from "./imageops.js";

export const MAX_WINDOWS = 256;

function overlap(a, b) {
  return a.top < b.top + b.height && b.top < a.top + a.height && a.left < b.left + b.width && b.left < a.left + a.width;
}

/** Hole regions {top, left, bottom, right}: holes closer than resolution / 8 grouped, each box tight on its holes. */
function holeRegions(hole, height, width, resolution) {
  const gap = Math.max(1, Math.floor(resolution / 8));
  const grouped = dilateSquare(hole, height, width, gap);
  const components = componentBoxes(grouped, height, width);
  if (components.length > MAX_WINDOWS) return null;
  const regions = [];
  for (const box of components) {
    let top = box.bottom, bottom = -1, left = box.right, right = -1;
    for (let y = box.top; y < box.bottom; y++) {
      for (let x = box.left; x < box.right; x++) {
        if (!hole[y * width + x]) continue;
        if (y < top) top = y;
        if (y > bottom) bottom = y;
        if (x < left) left = x;
        if (x > right) right = x;
      }
    }
    if (bottom >= 0) regions.push({ top, left, bottom: bottom + 1, right: right + 1 });
  }
  return regions;
}

/** Non-overlapping windows {top, left, height, width} that cover every hole pixel, with context around them.
 * @param {Uint8Array} hole 1 = fill, height * width
 * @param {number} resolution the model's working resolution (its sample_size)
 * @param {number} context a window's side is at least context times its hole region's longer side
 */
export function planWindows(hole, height, width, resolution, context = 2.0) {
  const whole = [{ top: 0, left: 0, height, width }];
  const regions = holeRegions(hole, height, width, resolution);
  if (regions === null) return whole;
  const window = ({ top, left, bottom, right }) => {
    const side = Math.max(resolution, Math.ceil(context * Math.max(bottom - top, right - left)));
    const winHeight = Math.min(side, height);
    const winWidth = Math.min(side, width);
    return {
      top: Math.min(Math.max(Math.floor((top + bottom - winHeight) / 2), 0), height - winHeight),
      left: Math.min(Math.max(Math.floor((left + right - winWidth) / 2), 0), width - winWidth),
      height: winHeight,
      width: winWidth,
    };
  };
  let merged = true;
  while (merged) {
    merged = false;
    const windows = regions.map(window);
    search: for (let i = 0; i < windows.length; i++) {
      for (let j = i + 1; j < windows.length; j++) {
        if (!overlap(windows[i], windows[j])) continue;
        const a = regions[i], b = regions[j];
        regions[i] = {
          top: Math.min(a.top, b.top), left: Math.min(a.left, b.left),
          bottom: Math.max(a.bottom, b.bottom), right: Math.max(a.right, b.right),
        };
        regions.splice(j, 1);
        merged = true;
        break search;
      }
    }
  }
  const windows = regions.map(window);
  const area = windows.reduce((sum, w) => sum + w.height * w.width, 0);
  return area >= height * width ? whole : windows;
}
