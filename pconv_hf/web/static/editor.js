// The photo and the painted mask: two full-size canvases shown at a zoom, brush and eraser, undo and redo.
// The mask canvas is the hole mask: any painted (non-transparent) pixel is filled, as a user's mask file's
// white pixels are (pconv_hf.images.to_hole_mask).
const HISTORY_LIMIT = 30;
const PAINT = "rgb(255, 0, 80)";

export class Editor {
  constructor({ stage, box, photoCanvas, maskCanvas, onChange }) {
    Object.assign(this, { stage, box, photoCanvas, maskCanvas, onChange });
    this.photoContext = photoCanvas.getContext("2d", { willReadFrequently: true });
    this.maskContext = maskCanvas.getContext("2d", { willReadFrequently: true });
    this.zoom = 1;
    this.tool = "brush";
    this.size = 40;
    this.history = [];
    this.position = -1;
    this.photo = null; // the exact photo pixels (ImageData); canvases only display them
    this.bindPainting();
  }

  get width() { return this.photo ? this.photo.width : 0; }
  get height() { return this.photo ? this.photo.height : 0; }

  /** A new photo (ImageData): the mask is cleared and the history starts over. */
  setPhoto(photo) {
    this.photo = photo;
    for (const canvas of [this.photoCanvas, this.maskCanvas]) {
      canvas.width = photo.width;
      canvas.height = photo.height;
    }
    this.photoContext.putImageData(photo, 0, 0);
    this.size = Math.max(4, Math.round(Math.max(photo.width, photo.height) / 40));
    this.history = [];
    this.position = -1;
    this.box.hidden = false;
    this.fit();
    this.record();
  }

  /** The filled photo replaces the current one; the mask is cleared (one undo step). */
  replacePhoto(photo) {
    this.photo = photo;
    this.photoContext.putImageData(photo, 0, 0);
    this.maskContext.clearRect(0, 0, this.width, this.height);
    this.record();
  }

  /** Set the mask from a bool-like Uint8Array (1 = fill), replacing what was painted (one undo step). */
  setHole(hole) {
    const image = this.maskContext.createImageData(this.width, this.height);
    for (let i = 0; i < hole.length; i++) {
      if (!hole[i]) continue;
      image.data.set([255, 0, 80, 255], i * 4);
    }
    this.maskContext.putImageData(image, 0, 0);
    this.record();
  }

  clearMask() {
    this.maskContext.clearRect(0, 0, this.width, this.height);
    this.record();
  }

  /** The hole mask (Uint8Array, 1 = fill): every pixel the brush touched, anti-aliased edges included. */
  hole() {
    const alpha = this.maskContext.getImageData(0, 0, this.width, this.height).data;
    const hole = new Uint8Array(this.width * this.height);
    for (let i = 0; i < hole.length; i++) hole[i] = alpha[i * 4 + 3] !== 0 ? 1 : 0;
    return hole;
  }

  // --- history ---

  async record() {
    const mask = await createImageBitmap(this.maskCanvas);
    this.history.splice(this.position + 1);
    this.history.push({ photo: this.photo, mask });
    if (this.history.length > HISTORY_LIMIT) this.history.shift();
    this.position = this.history.length - 1;
    this.onChange();
  }

  get canUndo() { return this.position > 0; }
  get canRedo() { return this.position < this.history.length - 1; }

  undo() { if (this.canUndo) this.restore(this.position - 1); }
  redo() { if (this.canRedo) this.restore(this.position + 1); }

  restore(position) {
    this.position = position;
    const { photo, mask } = this.history[position];
    if (photo !== this.photo) {
      this.photo = photo;
      this.photoContext.putImageData(photo, 0, 0);
    }
    this.maskContext.clearRect(0, 0, this.width, this.height);
    this.maskContext.drawImage(mask, 0, 0);
    this.onChange();
  }

  // --- zoom ---

  setZoom(zoom) {
    this.zoom = Math.min(Math.max(zoom, 0.02), 16);
    this.box.style.width = `${this.width * this.zoom}px`;
    this.box.style.height = `${this.height * this.zoom}px`;
    this.onChange();
  }

  fit() {
    const scale = Math.min(this.stage.clientWidth / this.width, this.stage.clientHeight / this.height, 1);
    this.setZoom(scale > 0 ? scale : 1);
  }

  // --- painting ---

  setTool(tool) {
    this.tool = tool;
    this.onChange();
  }

  pointFrom(event) {
    const rect = this.maskCanvas.getBoundingClientRect();
    return [
      ((event.clientX - rect.left) / rect.width) * this.width,
      ((event.clientY - rect.top) / rect.height) * this.height,
    ];
  }

  bindPainting() {
    let last = null;
    const context = this.maskContext;
    const stroke = (from, to) => {
      context.globalCompositeOperation = this.tool === "eraser" ? "destination-out" : "source-over";
      context.strokeStyle = PAINT;
      context.fillStyle = PAINT;
      context.lineWidth = this.size;
      context.lineCap = "round";
      context.lineJoin = "round";
      context.beginPath();
      context.moveTo(...from);
      context.lineTo(...to);
      context.stroke();
    };
    this.maskCanvas.addEventListener("pointerdown", (event) => {
      if (!this.photo || event.button !== 0) return;
      this.maskCanvas.setPointerCapture(event.pointerId);
      last = this.pointFrom(event);
      stroke(last, last);
    });
    this.maskCanvas.addEventListener("pointermove", (event) => {
      if (!last) return;
      const point = this.pointFrom(event);
      stroke(last, point);
      last = point;
    });
    const end = () => {
      if (!last) return;
      last = null;
      this.record();
    };
    this.maskCanvas.addEventListener("pointerup", end);
    this.maskCanvas.addEventListener("pointercancel", end);
  }
}
