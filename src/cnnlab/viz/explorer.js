// cnnlab explorer: the saved model's forward pass in plain JavaScript, in float64.
// The page's Python side (explorer.py) embeds the layers, weights and test images.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("model-data").textContent);
  const [C0, H, W] = data.input, N0 = C0 * H * W; // input channels (1 grayscale, 3 RGB), size
  const floats = (b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return Float64Array.from(new Float32Array(bytes.buffer));
  };
  for (const layer of data.layers)
    for (const key of ["weight", "bias", "scale", "shift"])
      if (typeof layer[key] === "string") layer[key] = floats(layer[key]);
  const images = Uint8Array.from(atob(data.images), (c) => c.charCodeAt(0));
  const count = data.labels.length;

  // ---- the operations, on {shape, v} with v a Float64Array in C, H, W order ----
  function conv(x, l) {
    const [C, h, w] = x.shape, [O, , kh, kw] = l.kernel;
    const [sh, sw] = l.stride, [ph, pw] = l.padding, [dh, dw] = l.dilation;
    const ho = Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1;
    const wo = Math.floor((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
    const out = new Float64Array(O * ho * wo);
    for (let o = 0; o < O; o++)
      for (let i = 0; i < ho; i++)
        for (let j = 0; j < wo; j++) {
          let sum = l.bias ? l.bias[o] : 0;
          for (let c = 0; c < C; c++)
            for (let a = 0; a < kh; a++) {
              const r = i * sh - ph + a * dh;
              if (r < 0 || r >= h) continue;
              for (let b = 0; b < kw; b++) {
                const s = j * sw - pw + b * dw;
                if (s < 0 || s >= w) continue;
                sum += l.weight[((o * C + c) * kh + a) * kw + b] * x.v[(c * h + r) * w + s];
              }
            }
          out[(o * ho + i) * wo + j] = sum;
        }
    return { shape: [O, ho, wo], v: out };
  }
  function pool(x, l, max) {
    const [C, h, w] = x.shape, [kh, kw] = l.kernel, [sh, sw] = l.stride, [ph, pw] = l.padding;
    const ho = Math.floor((h + 2 * ph - kh) / sh) + 1, wo = Math.floor((w + 2 * pw - kw) / sw) + 1;
    const out = new Float64Array(C * ho * wo);
    for (let c = 0; c < C; c++)
      for (let i = 0; i < ho; i++)
        for (let j = 0; j < wo; j++) {
          let acc = max ? -Infinity : 0;
          for (let a = 0; a < kh; a++)
            for (let b = 0; b < kw; b++) {
              const r = i * sh - ph + a, s = j * sw - pw + b;
              if (r < 0 || r >= h || s < 0 || s >= w) continue; // padding: -inf or 0
              const v = x.v[(c * h + r) * w + s];
              acc = max ? Math.max(acc, v) : acc + v;
            }
          out[(c * ho + i) * wo + j] = max ? acc : acc / (kh * kw); // count_include_pad
        }
    return { shape: [C, ho, wo], v: out };
  }
  function linear(x, l) {
    const [O, I] = l.wshape, out = new Float64Array(O);
    for (let o = 0; o < O; o++) {
      let sum = l.bias ? l.bias[o] : 0;
      for (let i = 0; i < I; i++) sum += l.weight[o * I + i] * x.v[i];
      out[o] = sum;
    }
    return { shape: [O], v: out };
  }
  function affine(x, l) {
    const per = x.v.length / l.scale.length, out = new Float64Array(x.v.length);
    for (let i = 0; i < x.v.length; i++) {
      const c = Math.floor(i / per);
      out[i] = x.v[i] * l.scale[c] + l.shift[c];
    }
    return { shape: x.shape, v: out };
  }
  function gap(x) { // global average pooling: one mean per channel
    const [C, h, w] = x.shape, out = new Float64Array(C);
    for (let c = 0; c < C; c++) {
      let sum = 0;
      for (let i = 0; i < h * w; i++) sum += x.v[c * h * w + i];
      out[c] = sum / (h * w);
    }
    return { shape: [C, 1, 1], v: out };
  }
  function resize(x, l) { // bilinear, as torch's interpolate with align_corners=False
    const [C, h, w] = x.shape, S = l.size, out = new Float64Array(C * S * S);
    const at = (n, size, i) => { // (first source index, second, weight of the second)
      const src = Math.max(((i + 0.5) * n) / size - 0.5, 0), i0 = Math.floor(src);
      return [i0, Math.min(i0 + 1, n - 1), src - i0];
    };
    for (let i = 0; i < S; i++) {
      const [r0, r1, a] = at(h, S, i);
      for (let j = 0; j < S; j++) {
        const [s0, s1, b] = at(w, S, j);
        for (let c = 0; c < C; c++) {
          const v = (r, s) => x.v[(c * h + r) * w + s];
          out[(c * S + i) * S + j] = (1 - a) * ((1 - b) * v(r0, s0) + b * v(r0, s1)) +
            a * ((1 - b) * v(r1, s0) + b * v(r1, s1));
        }
      }
    }
    return { shape: [C, S, S], v: out };
  }
  function add(xs) {
    const out = Float64Array.from(xs[0].v);
    for (const x of xs.slice(1)) for (let i = 0; i < out.length; i++) out[i] += x.v[i];
    return { shape: xs[0].shape, v: out };
  }
  function cat(xs) { // along channels: each input's maps after the one before's
    const [, h, w] = xs[0].shape, out = new Float64Array(xs.reduce((n, x) => n + x.v.length, 0));
    let at = 0;
    for (const x of xs) { out.set(x.v, at); at += x.v.length; }
    return { shape: [out.length / (h * w), h, w], v: out };
  }
  const pointwise = { sigmoid: (v) => 1 / (1 + Math.exp(-v)), relu: (v) => Math.max(v, 0),
                      tanh: Math.tanh };
  function apply(xs, l) {
    const x = xs[0];
    switch (l.op) {
      case "conv": return conv(x, l);
      case "maxpool": return pool(x, l, true);
      case "avgpool": return pool(x, l, false);
      case "gap": return gap(x);
      case "resize": return resize(x, l);
      case "linear": return linear(x, l);
      case "affine": return affine(x, l);
      case "add": return add(xs);
      case "cat": return cat(xs);
      case "flatten": return { shape: [x.v.length], v: x.v };
      default: return { shape: x.shape, v: x.v.map(pointwise[l.op]) };
    }
  }
  function forward(pixels) { // pixels: Float64Array (C0*H*W, channel by channel) in [0, 1]
    const image = { shape: data.input, v: pixels }, outputs = [];
    data.layers.forEach((l, n) => { // each reads the layer before, or the ones it names
      const xs = (l.inputs || [n - 1]).map((k) => (k < 0 ? image : outputs[k]));
      outputs.push(apply(xs, l));
    });
    return outputs;
  }
  function softmax(v) {
    const m = Math.max(...v), e = Array.from(v, (z) => Math.exp(z - m));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((z) => z / s);
  }
  function flip(pixels) {
    const out = new Float64Array(pixels.length);
    for (let c = 0; c < C0; c++)
      for (let r = 0; r < H; r++)
        for (let s = 0; s < W; s++) out[(c * H + r) * W + s] = pixels[(c * H + r) * W + (W - 1 - s)];
    return out;
  }

  // ---- the page ----
  const canvas = document.getElementById("input");
  const field = document.getElementById("field"), layersBox = document.getElementById("layers");
  const indexBox = document.getElementById("index"), truth = document.getElementById("truth");
  let pixels = new Float64Array(N0);

  function paint(target, values, w, h, lo, hi) {
    const c = target.getContext("2d"), img = c.createImageData(w, h);
    const span = hi - lo || 1;
    for (let i = 0; i < w * h; i++) {
      const g = Math.round((255 * (values[i] - lo)) / span);
      img.data.set([g, g, g, 255], 4 * i);
    }
    c.putImageData(img, 0, 0);
  }
  function paintInput() { // grayscale, or the three channels as colour
    if (C0 !== 3) return paint(canvas, pixels, W, H, 0, 1);
    const c = canvas.getContext("2d"), img = c.createImageData(W, H);
    for (let i = 0; i < H * W; i++)
      img.data.set([0, 1, 2].map((k) => Math.round(255 * pixels[k * H * W + i])).concat(255), 4 * i);
    c.putImageData(img, 0, 0);
  }
  function range(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    return [lo, hi];
  }
  function describe(l) {
    const out = l.out.join("x");
    if (l.op === "conv") return `conv ${l.kernel[1]}→${l.kernel[0]}, ${l.kernel[2]}x${l.kernel[3]}` +
      `, padding ${l.padding.join("x")}, stride ${l.stride.join("x")} · ${out}`;
    if (l.op.endsWith("pool")) return `${l.op.slice(0, 3)} pool ${l.kernel.join("x")}, stride ` +
      `${l.stride.join("x")} · ${out}`;
    if (l.op === "affine") return `batch norm (eval: scale and shift) · ${out}`;
    const names = { linear: "dense", gap: "global average pooling", add: "sum (residual)",
                    cat: "channels concatenated", resize: "resized (bilinear)" };
    const from = l.inputs ? ` ← ${l.inputs.map((k) => (k < 0 ? "input" : k + 1)).join(", ")}` : "";
    return `${names[l.op] || l.op}${from} · ${out}`;
  }
  // One block per layer, built once; the maps are repainted on every forward pass.
  const views = data.layers.map((l, n) => {
    const box = document.createElement("div");
    box.className = "layer";
    box.appendChild(document.createElement("h2")).textContent = `${n + 1}. ${describe(l)}`;
    const maps = document.createElement("div");
    box.appendChild(maps);
    layersBox.appendChild(box);
    if (l.op === "flatten") { box.hidden = true; return { maps: [] }; }
    if (l.out.length !== 3) {
      maps.className = "dense";
      return { bars: Array.from({ length: l.out[0] }, () => maps.appendChild(document.createElement("div"))) };
    }
    maps.className = "maps";
    const [C, h, w] = l.out, scale = Math.max(2, Math.floor(84 / Math.max(h, w)));
    return { maps: Array.from({ length: Math.min(C, 64) }, (_, c) => { // the first 64 channels
      const m = document.createElement("canvas");
      m.width = w; m.height = h; m.style.width = w * scale + "px"; m.style.height = h * scale + "px";
      m.title = `channel ${c}`;
      m.addEventListener("pointermove", (e) => hover(n, c, e));
      m.addEventListener("pointerleave", () => { field.style.display = "none"; });
      return maps.appendChild(m);
    }) };
  });

  function hover(n, c, e) {
    const l = data.layers[n], [, h, w] = l.out, rect = e.target.getBoundingClientRect();
    const i = Math.min(h - 1, Math.floor(((e.clientY - rect.top) / rect.height) * h));
    const j = Math.min(w - 1, Math.floor(((e.clientX - rect.left) / rect.width) * w));
    if (!l.field) return; // a layer of a network that branches: no single field to show
    const f = l.field, box = [0, 1].map((a) => {
      const centre = f.start[a] + [i, j][a] * f.jump[a];
      const lo = Math.max(0, centre - f.size[a] / 2), hi = Math.min(a ? W : H, centre + f.size[a] / 2);
      return [lo, hi];
    });
    const unit = canvas.clientWidth / W;
    Object.assign(field.style, { display: "block", top: box[0][0] * unit + "px",
      left: box[1][0] * unit + "px", height: (box[0][1] - box[0][0]) * unit + "px",
      width: (box[1][1] - box[1][0]) * unit + "px" });
    field.dataset.rows = box[0].join(","); field.dataset.cols = box[1].join(",");
    showKernel(data.layers[f.conv], c, `layer ${n + 1}, channel ${c}, pixel (${i}, ${j}): `);
  }
  function showKernel(l, o, text) {
    const [, C, kh, kw] = l.kernel, panel = document.getElementById("kernel");
    panel.textContent = text + `kernel of output channel ${o} (${C} input channel${C > 1 ? "s" : ""})`;
    panel.appendChild(document.createElement("br"));
    const slice = l.weight.subarray(o * C * kh * kw, (o + 1) * C * kh * kw), [lo, hi] = range(slice);
    for (let c = 0; c < Math.min(C, 16); c++) {
      const k = document.createElement("canvas");
      k.width = kw; k.height = kh;
      paint(k, slice.subarray(c * kh * kw, (c + 1) * kh * kw), kw, kh, lo, hi);
      panel.appendChild(k);
    }
  }

  function run() {
    const outputs = forward(pixels);
    let probs = softmax(outputs[outputs.length - 1].v);
    if (data.tta) { // as cnnlab predict: the mean with the mirror image's probabilities
      const mirror = forward(flip(pixels)), other = softmax(mirror[mirror.length - 1].v);
      probs = probs.map((p, k) => (p + other[k]) / 2);
    }
    paintInput();
    outputs.forEach((x, n) => {
      const view = views[n];
      if (view.bars) {
        const [, hi] = range(x.v.map(Math.abs));
        view.bars.forEach((b, k) => { b.style.height = (60 * Math.abs(x.v[k])) / (hi || 1) + "px"; });
      } else view.maps.forEach((m, c) => {
        const [, h, w] = x.shape, part = x.v.subarray(c * h * w, (c + 1) * h * w), [lo, hi] = range(part);
        paint(m, part, w, h, lo, hi);
      });
    });
    const best = probs.indexOf(Math.max(...probs));
    document.getElementById("prediction").textContent = data.classes[best];
    // the class names come from the run's model.json: text, never markup
    document.getElementById("probs").replaceChildren(...probs.map((p, k) => {
      const bar = document.createElement("div"), fill = document.createElement("div");
      bar.className = "bar";
      bar.appendChild(document.createElement("span")).textContent = data.classes[k];
      fill.style.width = `${(200 * p).toFixed(1)}px`;
      bar.append(fill, `${(100 * p).toFixed(1)}%`);
      return bar;
    }));
    window.cnnlab = { probabilities: probs, prediction: data.classes[best], pixels: Array.from(pixels),
                      layers: () => outputs.map((x) => Array.from(x.v)) }; // each layer's output
    if (!document.body.dataset.firstPredictionMs)
      document.body.dataset.firstPredictionMs = performance.now().toFixed(1);
  }
  function select(k) {
    k = Math.max(0, Math.min(count - 1, k | 0));
    for (let i = 0; i < N0; i++) pixels[i] = images[k * N0 + i] / 255; // as cnnlab predict
    indexBox.value = k;
    truth.textContent = `(label: ${data.classes[data.labels[k]]})`;
    run();
  }
  function fromHash() {
    const m = /index=(\d+)/.exec(location.hash);
    select(m ? Number(m[1]) : 0);
  }
  const go = (k) => { history.replaceState(null, "", "#index=" + k); select(k); };
  indexBox.addEventListener("change", () => go(Number(indexBox.value)));
  document.getElementById("prev").addEventListener("click", () => go(Number(indexBox.value) - 1));
  document.getElementById("next").addEventListener("click", () => go(Number(indexBox.value) + 1));
  document.getElementById("clear").addEventListener("click", () => {
    pixels = new Float64Array(N0); truth.textContent = "(your drawing)"; run();
  });
  window.addEventListener("hashchange", fromHash);

  // Drawing: a soft round brush, about 3 pixels wide, in the model's input resolution.
  let last = null;
  function stroke(e) {
    const rect = canvas.getBoundingClientRect();
    const p = [((e.clientY - rect.top) / rect.height) * H, ((e.clientX - rect.left) / rect.width) * W];
    const from = last || p, steps = Math.ceil(Math.hypot(p[0] - from[0], p[1] - from[1]) * 2) + 1;
    for (let t = 0; t <= steps; t++) {
      const y = from[0] + ((p[0] - from[0]) * t) / steps, x = from[1] + ((p[1] - from[1]) * t) / steps;
      for (let r = Math.floor(y - 2); r <= y + 2; r++)
        for (let s = Math.floor(x - 2); s <= x + 2; s++) {
          if (r < 0 || r >= H || s < 0 || s >= W) continue;
          const d = Math.hypot(r + 0.5 - y, s + 0.5 - x), ink = Math.min(1, Math.max(0, 1.8 - d));
          for (let c = 0; c < C0; c++) // white ink, in every channel
            pixels[(c * H + r) * W + s] = Math.max(pixels[(c * H + r) * W + s], ink);
        }
    }
    last = p;
    truth.textContent = "(your drawing)";
    run();
  }
  canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); last = null; stroke(e); });
  canvas.addEventListener("pointermove", (e) => { if (e.buttons) stroke(e); });
  canvas.addEventListener("pointerup", () => { last = null; });
  fromHash();
})();
