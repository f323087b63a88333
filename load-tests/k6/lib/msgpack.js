// A small MessagePack codec for the k6 scripts (k6 has no npm): objects as maps, arrays,
// strings, numbers, booleans and null, which is everything Haven's messages and answers carry.
// The encoder writes standard big-endian MessagePack, as msgpackr (the server's decoder) reads it;
// the decoder reads what msgpackr writes (including map16 for small maps and float32/float64).
//
// Also here: the two header fields of Colyseus frames, which are written by @colyseus/schema's
// encoder and look like MessagePack but put multi-byte integers in little-endian order.

/** UTF-8 bytes of a string (k6 has no global TextEncoder). */
export function utf8Encode(str) {
  const out = [];
  for (let i = 0; i < str.length; i++) {
    let c = str.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < str.length) {
      const d = str.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 0x3f), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
  }
  return out;
}

/** The string in `bytes[start, end)`, decoded as UTF-8. */
export function utf8Decode(bytes, start, end) {
  let s = "";
  let i = start;
  while (i < end) {
    const b = bytes[i++];
    let c;
    if (b < 0x80) c = b;
    else if (b < 0xe0) c = ((b & 0x1f) << 6) | (bytes[i++] & 0x3f);
    else if (b < 0xf0) c = ((b & 0x0f) << 12) | ((bytes[i++] & 0x3f) << 6) | (bytes[i++] & 0x3f);
    else c = ((b & 0x07) << 18) | ((bytes[i++] & 0x3f) << 12) | ((bytes[i++] & 0x3f) << 6) | (bytes[i++] & 0x3f);
    if (c >= 0x10000) {
      c -= 0x10000;
      s += String.fromCharCode(0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
    } else {
      s += String.fromCharCode(c);
    }
  }
  return s;
}

const f64 = new DataView(new ArrayBuffer(8));

function pushUint(out, value, bytes) {
  for (let i = bytes - 1; i >= 0; i--) out.push(Math.floor(value / Math.pow(256, i)) % 256);
}

/** Appends the MessagePack encoding of `value` to the byte array `out`. */
export function packInto(out, value) {
  if (value === null || value === undefined) {
    out.push(0xc0);
  } else if (value === true) {
    out.push(0xc3);
  } else if (value === false) {
    out.push(0xc2);
  } else if (typeof value === "number") {
    if (Number.isInteger(value) && value >= 0 && value <= 0xffffffff) {
      if (value < 0x80) out.push(value);
      else if (value < 0x100) out.push(0xcc, value);
      else if (value < 0x10000) { out.push(0xcd); pushUint(out, value, 2); }
      else { out.push(0xce); pushUint(out, value, 4); }
    } else if (Number.isInteger(value) && value < 0 && value >= -0x80000000) {
      if (value >= -32) out.push(value & 0xff);
      else if (value >= -0x80) out.push(0xd0, value & 0xff);
      else if (value >= -0x8000) { out.push(0xd1); pushUint(out, value & 0xffff, 2); }
      else { out.push(0xd2); pushUint(out, value >>> 0, 4); }
    } else {
      f64.setFloat64(0, value);
      out.push(0xcb);
      for (let i = 0; i < 8; i++) out.push(f64.getUint8(i));
    }
  } else if (typeof value === "string") {
    const b = utf8Encode(value);
    if (b.length < 32) out.push(0xa0 | b.length);
    else if (b.length < 0x100) out.push(0xd9, b.length);
    else if (b.length < 0x10000) { out.push(0xda); pushUint(out, b.length, 2); }
    else { out.push(0xdb); pushUint(out, b.length, 4); }
    for (let i = 0; i < b.length; i++) out.push(b[i]);
  } else if (Array.isArray(value)) {
    if (value.length < 16) out.push(0x90 | value.length);
    else { out.push(0xdc); pushUint(out, value.length, 2); }
    for (let i = 0; i < value.length; i++) packInto(out, value[i]);
  } else if (typeof value === "object") {
    const keys = Object.keys(value).filter((k) => value[k] !== undefined);
    if (keys.length < 16) out.push(0x80 | keys.length);
    else { out.push(0xde); pushUint(out, keys.length, 2); }
    for (const k of keys) {
      packInto(out, k);
      packInto(out, value[k]);
    }
  } else {
    throw new Error(`msgpack: cannot encode a ${typeof value}`);
  }
  return out;
}

/** MessagePack bytes of `value`, as a plain array of byte values. */
export function pack(value) {
  return packInto([], value);
}

function readUint(bytes, at, n) {
  let v = 0;
  for (let i = 0; i < n; i++) v = v * 256 + bytes[at + i];
  return v;
}

/** Decodes one MessagePack value at `it.offset` of the Uint8Array `bytes`, advancing `it.offset`. */
export function unpackAt(bytes, it) {
  const b = bytes[it.offset++];
  if (b === undefined) throw new Error("msgpack: unexpected end of data");
  if (b < 0x80) return b;
  if (b >= 0xe0) return b - 0x100;
  if (b >= 0xa0 && b <= 0xbf) return str(bytes, it, b & 0x1f);
  if (b >= 0x90 && b <= 0x9f) return arr(bytes, it, b & 0x0f);
  if (b >= 0x80 && b <= 0x8f) return map(bytes, it, b & 0x0f);
  const at = it.offset;
  switch (b) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xcc: it.offset += 1; return bytes[at];
    case 0xcd: it.offset += 2; return readUint(bytes, at, 2);
    case 0xce: it.offset += 4; return readUint(bytes, at, 4);
    case 0xcf: it.offset += 8; return readUint(bytes, at, 8);
    case 0xd0: it.offset += 1; return (bytes[at] << 24) >> 24;
    case 0xd1: it.offset += 2; return (readUint(bytes, at, 2) << 16) >> 16;
    case 0xd2: it.offset += 4; return readUint(bytes, at, 4) | 0;
    case 0xd3: {
      it.offset += 8;
      const hi = readUint(bytes, at, 4) | 0;
      return hi * 4294967296 + readUint(bytes, at + 4, 4);
    }
    case 0xca: case 0xcb: {
      const n = b === 0xca ? 4 : 8;
      const view = new DataView(new ArrayBuffer(n));
      for (let i = 0; i < n; i++) view.setUint8(i, bytes[at + i]);
      it.offset += n;
      return n === 4 ? view.getFloat32(0) : view.getFloat64(0);
    }
    case 0xd9: it.offset += 1; return str(bytes, it, bytes[at]);
    case 0xda: it.offset += 2; return str(bytes, it, readUint(bytes, at, 2));
    case 0xdb: it.offset += 4; return str(bytes, it, readUint(bytes, at, 4));
    case 0xc4: it.offset += 1; return bin(bytes, it, bytes[at]);
    case 0xc5: it.offset += 2; return bin(bytes, it, readUint(bytes, at, 2));
    case 0xc6: it.offset += 4; return bin(bytes, it, readUint(bytes, at, 4));
    case 0xdc: it.offset += 2; return arr(bytes, it, readUint(bytes, at, 2));
    case 0xdd: it.offset += 4; return arr(bytes, it, readUint(bytes, at, 4));
    case 0xde: it.offset += 2; return map(bytes, it, readUint(bytes, at, 2));
    case 0xdf: it.offset += 4; return map(bytes, it, readUint(bytes, at, 4));
    default: throw new Error(`msgpack: unsupported type byte 0x${b.toString(16)}`);
  }
}

function str(bytes, it, n) {
  const s = utf8Decode(bytes, it.offset, it.offset + n);
  it.offset += n;
  return s;
}

function bin(bytes, it, n) {
  const out = bytes.slice(it.offset, it.offset + n);
  it.offset += n;
  return out;
}

function arr(bytes, it, n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(unpackAt(bytes, it));
  return out;
}

function map(bytes, it, n) {
  const out = {};
  for (let i = 0; i < n; i++) {
    const k = unpackAt(bytes, it);
    out[String(k)] = unpackAt(bytes, it);
  }
  return out;
}

/** Decodes the MessagePack value that starts at `offset` (the rest of a frame). */
export function unpack(bytes, offset) {
  return unpackAt(bytes, { offset: offset || 0 });
}

// ------------------------------------------------------------------ Colyseus frame header fields

/**
 * A non-negative integer below 2^31 as @colyseus/schema's `encode.number` writes it in frame
 * headers (the request id): a positive fixint below 128, else 0xcc/0xcd/0xce followed by 1, 2 or
 * 4 bytes in little-endian order. (From 2^31 that encoder writes a float; request ids stay below.)
 */
export function headerNumber(value) {
  if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) throw new Error(`header number out of range: ${value}`);
  if (value < 0x80) return [value];
  if (value < 0x100) return [0xcc, value];
  if (value < 0x10000) return [0xcd, value & 0xff, value >> 8];
  return [0xce, value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, value >>> 24];
}

function readLE(bytes, at, n) {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + bytes[at + i];
  return v;
}

/**
 * Reads a header number written by `encode.number`. That encoder writes any value that is not a
 * 32-bit signed integer (so also an integer of 2^31 or more) as a float32 or float64, again in
 * little-endian order.
 */
export function readHeaderNumber(bytes, it) {
  const b = bytes[it.offset++];
  if (b < 0x80) return b;
  if (b >= 0xe0) return b - 0x100;
  const at = it.offset;
  switch (b) {
    case 0xcc: it.offset += 1; return bytes[at];
    case 0xcd: it.offset += 2; return readLE(bytes, at, 2);
    case 0xce: it.offset += 4; return readLE(bytes, at, 4);
    case 0xcf: it.offset += 8; return readLE(bytes, at, 8);
    case 0xca: case 0xcb: {
      const n = b === 0xca ? 4 : 8;
      const view = new DataView(new ArrayBuffer(n));
      for (let i = 0; i < n; i++) view.setUint8(i, bytes[at + i]);
      it.offset += n;
      return n === 4 ? view.getFloat32(0, true) : view.getFloat64(0, true);
    }
    case 0xd0: it.offset += 1; return (bytes[at] << 24) >> 24;
    case 0xd1: it.offset += 2; return ((bytes[at] | (bytes[at + 1] << 8)) << 16) >> 16;
    case 0xd2: it.offset += 4; return bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24);
    default: throw new Error(`header number: unsupported type byte 0x${b.toString(16)}`);
  }
}

/**
 * A message type (or error text) as @colyseus/schema's `encode.string` writes it: fixstr below
 * 32 bytes, str8 below 256, str16 (length little-endian) above. Message types are 1–40 characters.
 */
export function headerString(s) {
  const b = utf8Encode(s);
  if (b.length < 32) return [0xa0 | b.length].concat(b);
  if (b.length < 0x100) return [0xd9, b.length].concat(b);
  if (b.length < 0x10000) return [0xda, b.length & 0xff, b.length >> 8].concat(b);
  throw new Error("header string too long");
}

/** Reads a header string written by `encode.string`. */
export function readHeaderString(bytes, it) {
  const b = bytes[it.offset++];
  let n;
  if ((b & 0xe0) === 0xa0) n = b & 0x1f;
  else if (b === 0xd9) n = bytes[it.offset++];
  else if (b === 0xda) { n = bytes[it.offset] | (bytes[it.offset + 1] << 8); it.offset += 2; }
  else if (b === 0xdb) { n = (bytes[it.offset] | (bytes[it.offset + 1] << 8) | (bytes[it.offset + 2] << 16)) + bytes[it.offset + 3] * 0x1000000; it.offset += 4; }
  else throw new Error(`header string: unsupported type byte 0x${b.toString(16)}`);
  return str(bytes, it, n);
}

/** Whether the header field at `it.offset` is a string (otherwise a number). */
export function headerIsString(bytes, it) {
  const b = bytes[it.offset];
  return (b & 0xe0) === 0xa0 || b === 0xd9 || b === 0xda || b === 0xdb;
}
