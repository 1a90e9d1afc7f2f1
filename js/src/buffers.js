// Binary traits (ipywidgets `bytes`) arrive as DataViews whose byteOffset may not be 4-byte aligned.
// These helpers copy the bytes before viewing them as typed arrays (little-endian, as Python writes them).

/**
 * Copy the bytes behind a DataView / ArrayBuffer / typed array into a fresh ArrayBuffer.
 * @param {unknown} src
 * @returns {ArrayBuffer}
 */
export function copyBytes(src) {
  if (src == null) return new ArrayBuffer(0);
  if (src instanceof ArrayBuffer) return src.slice(0);
  if (ArrayBuffer.isView(src)) {
    const v = /** @type {ArrayBufferView} */ (src);
    return /** @type {ArrayBuffer} */ (v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  }
  // Some transports hand over {buffer: ArrayBuffer}; anything else is treated as empty.
  const maybe = /** @type {any} */ (src);
  if (maybe && maybe.buffer instanceof ArrayBuffer) return copyBytes(maybe.buffer);
  return new ArrayBuffer(0);
}

const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * @template T
 * @param {unknown} src
 * @param {4} width
 * @param {(b: ArrayBuffer) => T} make
 * @param {(dv: DataView, off: number) => number} read
 * @param {(n: number) => T & {[i: number]: number}} alloc
 */
function view(src, width, make, read, alloc) {
  if (Array.isArray(src)) {
    const out = alloc(src.length);
    src.forEach((x, i) => { out[i] = Number(x); });
    return out;
  }
  const bytes = copyBytes(src);
  const n = Math.floor(bytes.byteLength / width);
  const trimmed = bytes.byteLength === n * width ? bytes : bytes.slice(0, n * width);
  if (LITTLE) return make(trimmed);
  const dv = new DataView(trimmed);
  const out = alloc(n);
  for (let i = 0; i < n; i++) out[i] = read(dv, i * width);
  return out;
}

/** float32 little-endian bytes -> Float32Array (a copy). @param {unknown} src @returns {Float32Array<ArrayBuffer>} */
export function toFloat32(src) {
  return view(src, 4, (b) => new Float32Array(b), (dv, o) => dv.getFloat32(o, true), (n) => new Float32Array(n));
}

/** int32 little-endian bytes -> Int32Array (a copy). @param {unknown} src @returns {Int32Array<ArrayBuffer>} */
export function toInt32(src) {
  return view(src, 4, (b) => new Int32Array(b), (dv, o) => dv.getInt32(o, true), (n) => new Int32Array(n));
}

/**
 * Row `i` of a row-major (rows x k) pair of id / value arrays: [[id, value], ...] with value != 0.
 * @param {Int32Array} ids @param {Float32Array} values @param {number} k @param {number} i
 * @returns {Array<[number, number]>}
 */
export function codesRow(ids, values, k, i) {
  /** @type {Array<[number, number]>} */
  const out = [];
  if (!(k > 0)) return out;
  const end = Math.min((i + 1) * k, ids.length, values.length);
  for (let j = i * k; j < end; j++) if (values[j] !== 0 && Number.isFinite(values[j])) out.push([ids[j], values[j]]);
  return out;
}
