// Class-id maps from the server's sample PNGs. The ground truth and the predictions are 8-bit palette
// PNGs whose pixel values are the class ids (255 where a pixel has no class). A canvas would hand back
// palette colours, and two classes may share a colour, so the pixel values are read from the file
// itself: chunks → inflate (the browser's DecompressionStream) → undo the per-row filters.
const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const PALETTE = 3;
const GREY = 0;

async function inflate(chunks) {
  const stream = new Blob(chunks).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function paeth(a, b, c) {
  const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// Undo the PNG row filters (one byte per pixel) into `ids`: a = left, b = up, c = up-left.
function unfilter(raw, width, height) {
  const ids = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (width + 1)];
    const line = raw.subarray(y * (width + 1) + 1, (y + 1) * (width + 1));
    const row = y * width, up = row - width;
    const left = (x) => (x > 0 ? ids[row + x - 1] : 0);
    const above = (x) => (y > 0 ? ids[up + x] : 0);
    for (let x = 0; x < width; x++) {
      let predictor;
      switch (filter) {
        case 0: predictor = 0; break;
        case 1: predictor = left(x); break;
        case 2: predictor = above(x); break;
        case 3: predictor = (left(x) + above(x)) >> 1; break;
        case 4: predictor = paeth(left(x), above(x), x > 0 && y > 0 ? ids[up + x - 1] : 0); break;
        default: throw new Error(`PNG row ${y}: unknown filter ${filter}`);
      }
      ids[row + x] = line[x] + predictor; // Uint8Array: modulo 256, as the PNG filters are
    }
  }
  return ids;
}

// {width, height, ids} of an 8-bit palette (or grey), non-interlaced PNG: ids[y * width + x] is the
// pixel value.
export async function classIdsOfPng(buffer) {
  const bytes = new Uint8Array(buffer);
  const view = new DataView(buffer);
  if (!SIGNATURE.every((b, i) => bytes[i] === b)) throw new Error("not a PNG file");
  let width = 0, height = 0;
  const data = [];
  for (let at = 8; at + 8 <= bytes.length;) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const body = bytes.subarray(at + 8, at + 8 + length);
    if (type === "IHDR") {
      width = view.getUint32(at + 8);
      height = view.getUint32(at + 12);
      const [depth, colourType, , , interlace] = body.subarray(8, 13);
      if (depth !== 8 || (colourType !== PALETTE && colourType !== GREY) || interlace !== 0) {
        throw new Error(`not an 8-bit class-id PNG (depth ${depth}, colour type ${colourType}, interlace ${interlace})`);
      }
    } else if (type === "IDAT") {
      data.push(body);
    } else if (type === "IEND") {
      break;
    }
    at += 12 + length;
  }
  const raw = await inflate(data);
  if (raw.length < height * (width + 1)) throw new Error("PNG image data cut short");
  return { width, height, ids: unfilter(raw, width, height) };
}
