// The fastsam-onnx page: upload once to /v1/segment, then every click, box or text goes to /v1/prompt
// with the image_id (the server keeps the segment-everything result cached), so prompting is fast.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const imageCanvas = $("image"), overlay = $("overlay"), status = $("status");
  const state = { file: null, imageId: null, width: 0, height: 0, points: [], labels: [], boxes: [], texts: null,
                  last: null, drag: null };
  window.fastsam = state; // for tests and the console

  const keyBox = $("key");
  const hashKey = new URLSearchParams(location.hash.slice(1)).get("key");
  if (hashKey) { sessionStorage.setItem("fastsam-key", hashKey); history.replaceState(null, "", location.pathname); }
  keyBox.value = sessionStorage.getItem("fastsam-key") || "";
  keyBox.addEventListener("change", () => sessionStorage.setItem("fastsam-key", keyBox.value));

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (keyBox.value) h["Authorization"] = "Bearer " + keyBox.value;
    return h;
  }
  function say(text, isError) { status.textContent = text; status.className = isError ? "error" : ""; }

  async function call(path, body, isForm) {
    const res = await fetch(path, { method: "POST", headers: headers(isForm ? {} : { "Content-Type": "application/json" }),
                                    body: isForm ? body : JSON.stringify(body) });
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      const err = new Error((data && data.error && data.error.message) || res.status + " " + res.statusText);
      err.status = res.status; err.code = data && data.error && data.error.code;
      throw err;
    }
    return data;
  }

  async function upload() {
    const form = new FormData();
    form.append("image", state.file, state.file.name || "image");
    form.append("conf", $("conf").value);
    form.append("iou", $("iou").value);
    const t0 = performance.now();
    const data = await call("/v1/segment", form, true);
    state.imageId = data.image_id;
    return [data, performance.now() - t0];
  }

  async function run(what) {
    if (!state.file) return;
    try {
      say("working…");
      let data, ms;
      if (what === "segment" || !state.imageId) {
        [data, ms] = await upload();
        if (what === "segment") { show(data, "everything", ms); return; }
      }
      const body = { image_id: state.imageId };
      if (state.points.length) { body.points = state.points; body.labels = state.labels; }
      if (state.boxes.length) body.boxes = state.boxes;
      if (state.texts) body.texts = state.texts;
      const t0 = performance.now();
      try {
        data = await call("/v1/prompt", body);
      } catch (e) {
        if (e.status !== 404) throw e;
        await upload(); // evicted from the server's cache: send the image again, once
        body.image_id = state.imageId;
        data = await call("/v1/prompt", body);
      }
      show(data, "prompt", performance.now() - t0);
    } catch (e) {
      say("error: " + e.message, true);
    }
  }

  function colour(i) { // golden-ratio hues, as the server's overlay
    const h = (i * 0.618033988749895) % 1, s = 0.75, v = 0.95, k = (n) => (n + h * 6) % 6;
    const f = (n) => v - v * s * Math.max(0, Math.min(k(n), 4 - k(n), 1));
    return [Math.round(f(5) * 255), Math.round(f(3) * 255), Math.round(f(1) * 255)];
  }

  function countsOf(c) { // COCO's compressed RLE string (rleFrString) → run lengths; a list as it is
    if (typeof c !== "string") return c;
    const out = [];
    for (let p = 0; p < c.length;) {
      let x = 0, k = 0, more = true;
      while (more) {
        const ch = c.charCodeAt(p++) - 48;
        x += (ch & 0x1f) * Math.pow(2, 5 * k++); // no 32-bit shifts: exact to 2 ** 53
        more = (ch & 0x20) !== 0;
        if (!more && (ch & 0x10)) x -= Math.pow(2, 5 * k); // the last group's top bit: negative
      }
      if (out.length > 2) x += out[out.length - 2]; // from the fourth on: the difference to the count two back
      out.push(x);
    }
    return out;
  }

  function decodeRle(rle) { // COCO RLE (compressed string or counts), column-major → Uint8Array(h * w) row-major
    const [h, w] = rle.size, out = new Uint8Array(h * w);
    let pos = 0, on = false;
    for (const n of countsOf(rle.counts)) {
      if (on) for (let j = pos; j < pos + n; j++) out[(j % h) * w + Math.floor(j / h)] = 1;
      pos += n; on = !on;
    }
    return out;
  }

  function show(data, what, ms) {
    state.last = data;
    const w = state.width, h = state.height, ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const img = ctx.createImageData(w, h), px = img.data;
    const order = data.instances.map((inst, i) => i).sort((a, b) => data.instances[b].area - data.instances[a].area);
    for (const i of order) { // large masks first so small ones stay visible
      const m = decodeRle(data.instances[i].segmentation), [r, g, b] = colour(i);
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
        const p = y * w + x;
        if (!m[p]) continue;
        const edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 || !m[p - 1] || !m[p + 1] || !m[p - w] || !m[p + w];
        px[4 * p] = r; px[4 * p + 1] = g; px[4 * p + 2] = b; px[4 * p + 3] = edge ? 255 : 128;
      }
    }
    ctx.putImageData(img, 0, 0);
    drawPrompts(ctx);
    overlay.dataset.masks = String(data.instances.length);
    $("download").disabled = false;
    const t = data.timings_ms || {};
    say(`${what}: ${data.instances.length} mask(s) in ${ms.toFixed(0)} ms (server ${(t.server_total || 0).toFixed(0)} ms)` +
        (data.cached ? ", cached image" : ""));
  }

  function drawPrompts(ctx) {
    ctx.lineWidth = 2;
    for (const [x1, y1, x2, y2] of state.boxes) { ctx.strokeStyle = "#fff"; ctx.strokeRect(x1, y1, x2 - x1, y2 - y1); }
    state.points.forEach(([x, y], k) => {
      ctx.beginPath(); ctx.arc(x, y, 5, 0, 2 * Math.PI);
      ctx.fillStyle = state.labels[k] ? "#1a7f37" : "#cf222e"; ctx.fill(); ctx.strokeStyle = "#fff"; ctx.stroke();
    });
  }

  function open(file) {
    if (!file) return;
    const url = URL.createObjectURL(file), im = new Image();
    im.onload = () => {
      state.file = file; state.imageId = null; state.width = im.naturalWidth; state.height = im.naturalHeight;
      for (const c of [imageCanvas, overlay]) { c.width = state.width; c.height = state.height; }
      imageCanvas.getContext("2d").drawImage(im, 0, 0);
      URL.revokeObjectURL(url);
      $("hint").style.display = "none";
      for (const id of ["everything", "find", "clear"]) $(id).disabled = false;
      clearPrompts();
      run("segment");
    };
    im.onerror = () => say("error: the browser cannot open this file as an image", true);
    im.src = url;
  }

  function clearPrompts() { state.points = []; state.labels = []; state.boxes = []; state.texts = null; }

  function at(ev) { // mouse position in image pixels (the canvas may be scaled by CSS)
    const r = overlay.getBoundingClientRect();
    return [Math.round((ev.clientX - r.left) * state.width / r.width), Math.round((ev.clientY - r.top) * state.height / r.height)];
  }

  overlay.addEventListener("contextmenu", (ev) => ev.preventDefault());
  overlay.addEventListener("mousedown", (ev) => { if (state.file) state.drag = { start: at(ev), button: ev.button }; });
  overlay.addEventListener("mouseup", (ev) => {
    const d = state.drag; state.drag = null;
    if (!d) return;
    const [x0, y0] = d.start, [x1, y1] = at(ev);
    if (Math.abs(x1 - x0) > 4 && Math.abs(y1 - y0) > 4 && d.button === 0) {
      state.boxes.push([Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)]);
    } else {
      state.points.push([x1, y1]);
      state.labels.push(d.button === 2 || $("negative").checked ? 0 : 1);
    }
    run("prompt");
  });

  $("file").addEventListener("change", (ev) => open(ev.target.files[0]));
  const stage = $("stage");
  stage.addEventListener("dragover", (ev) => { ev.preventDefault(); stage.classList.add("drop"); });
  stage.addEventListener("dragleave", () => stage.classList.remove("drop"));
  stage.addEventListener("drop", (ev) => { ev.preventDefault(); stage.classList.remove("drop"); open(ev.dataTransfer.files[0]); });
  $("everything").addEventListener("click", () => { clearPrompts(); run("segment"); });
  $("clear").addEventListener("click", () => { clearPrompts(); overlay.getContext("2d").clearRect(0, 0, state.width, state.height); overlay.dataset.masks = "0"; say("prompts cleared"); });
  $("find").addEventListener("click", () => {
    const t = $("text").value.split(",").map((s) => s.trim()).filter(Boolean);
    if (!t.length) return say("type a text prompt first", true);
    clearPrompts(); state.texts = t; run("prompt");
  });
  $("text").addEventListener("keydown", (ev) => { if (ev.key === "Enter") $("find").click(); });
  for (const id of ["conf", "iou"]) $(id).addEventListener("change", () => {
    $(id + "v").textContent = Number($(id).value).toFixed(2);
    state.imageId = null; run(state.points.length || state.boxes.length || state.texts ? "prompt" : "segment");
  });
  $("download").addEventListener("click", () => {
    if (!state.last) return;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([JSON.stringify(state.last, null, 1)], { type: "application/json" }));
    a.download = "fastsam.json"; a.click(); setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  });
})();
