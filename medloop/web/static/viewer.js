// Slice viewer: image in grey with window/level (presets for CT abdomen and brain MRI, or
// drag the sliders), the reference label as an outline and the prediction as a tint at a
// chosen opacity, per class colour. Scroll the mouse wheel (or arrow keys) over the image
// to move through slices; zoom with the buttons. Data: GET /api/v1/trials/{id}/slices
// (uint8 display image, float32 stored intensities, uint8 class maps; base64).
(function () {
  "use strict";
  var root = document.getElementById("viewer");
  if (!root) { return; }
  var PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180]];
  var PRESETS = {  // [width, level]; "auto" keeps the server's 0.5-99.5 percentile window
    "ct-abdomen": [400, 40], "ct-brain": [80, 40], "ct-lung": [1500, -600], "ct-bone": [1800, 400]
  };
  var trial = root.dataset.trial;
  var cases = JSON.parse(root.dataset.cases);
  var labels = JSON.parse(root.dataset.labels);
  var canvas = document.getElementById("slice-canvas");
  var ctx = canvas.getContext("2d");
  var el = function (id) { return document.getElementById(id); };
  var split = el("v-split"), caseSel = el("v-case"), zIn = el("v-z"), status = el("v-status");
  var preset = el("v-preset"), wIn = el("v-width"), lIn = el("v-level"), zoomText = el("v-zoom-text");
  var current = null, zoom = 1, pending = null;

  function decode(b64) {
    if (!b64) { return null; }
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }
  function decodeF32(b64) {
    var bytes = decode(b64);
    return bytes ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4) : null;
  }
  function colour(v) { return PALETTE[(v - 1) % PALETTE.length]; }

  function percentile(values, q) {
    var sorted = Array.prototype.slice.call(values).sort(function (a, b) { return a - b; });
    return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0;
  }

  // Brain MRI has no fixed units: window the brain itself (non-zero voxels, 1st-99th percentile).
  function brainWindow(raw) {
    var inside = [];
    for (var i = 0; i < raw.length; i++) { if (raw[i] > 0) { inside.push(raw[i]); } }
    if (!inside.length) { return null; }
    var lo = percentile(inside, 0.01), hi = percentile(inside, 0.99);
    return [Math.max(hi - lo, 1e-6), (hi + lo) / 2];
  }

  function applyPreset() {
    if (!current || !current.raw) { return; }
    var p = preset.value, wl = PRESETS[p] || (p === "mri-brain" ? brainWindow(current.raw) : null);
    if (wl) { wIn.value = String(Math.round(wl[0] * 100) / 100); lIn.value = String(Math.round(wl[1] * 100) / 100); }
  }

  function greyAt(i) {
    if (preset.value === "auto" || !current.raw) { return current.img[i]; }
    var w = Number(wIn.value) || 1, l = Number(lIn.value) || 0;
    var g = ((current.raw[i] - (l - w / 2)) / w) * 255;
    return g < 0 ? 0 : g > 255 ? 255 : g;
  }

  function draw() {
    if (!current) { return; }
    var w = current.width, h = current.height;
    canvas.width = w; canvas.height = h;
    canvas.style.width = (w * zoom * root.dataset.fit) + "px";
    canvas.style.height = (h * zoom * root.dataset.fit) + "px";
    var img = ctx.createImageData(w, h), px = img.data;
    var alpha = Number(el("v-alpha").value) / 100;
    var showLabel = el("v-label").checked && current.lab, showPred = el("v-pred").checked && current.pred;
    for (var i = 0; i < w * h; i++) {
      var g = greyAt(i), r = g, gg = g, b = g;
      if (showPred && current.pred[i] > 0) {
        var c = colour(current.pred[i]);
        r = (1 - alpha) * r + alpha * c[0]; gg = (1 - alpha) * gg + alpha * c[1]; b = (1 - alpha) * b + alpha * c[2];
      }
      if (showLabel) {
        var v = current.lab[i];
        if (v > 0) {
          var x = i % w, y = (i - x) / w;
          var edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 ||
            current.lab[i - 1] !== v || current.lab[i + 1] !== v || current.lab[i - w] !== v || current.lab[i + w] !== v;
          if (edge) { var c2 = colour(v); r = c2[0]; gg = c2[1]; b = c2[2]; }
        }
      }
      px[4 * i] = r; px[4 * i + 1] = gg; px[4 * i + 2] = b; px[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    zoomText.textContent = zoom + "×";
    root.dataset.drawn = current.caseId + ":" + current.z + ":" + preset.value + ":" + zoom;
  }

  function load() {
    var z = zIn.dataset.touched ? "&z=" + zIn.value : "";
    var url = "/api/v1/trials/" + encodeURIComponent(trial) + "/slices?split=" + encodeURIComponent(split.value) +
      "&case=" + encodeURIComponent(caseSel.value) + z;
    pending = url;
    status.textContent = "loading…";
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); })
      .then(function (res) {
        if (url !== pending) { return; }  // a newer slice was asked for while this one loaded
        if (!res.ok) { status.textContent = res.body.error ? res.body.error.message : "failed"; return; }
        var s = res.body, first = !current || current.caseId !== s.case;
        current = { width: s.width, height: s.height, z: s.z, depth: s.depth, caseId: s.case,
                    img: decode(s.image), raw: decodeF32(s.raw), lab: decode(s.label), pred: decode(s.prediction) };
        if (first) {
          root.dataset.fit = String(Math.max(1, Math.floor(320 / Math.max(s.width, s.height))));
          if (preset.value === "auto" && /^CT$/i.test(s.modality || "")) { preset.value = "ct-abdomen"; }
          if (preset.value === "auto" && /MR|T1|T2|FLAIR/i.test(s.modality || "")) { preset.value = "mri-brain"; }
        }
        if (preset.value === "mri-brain" || first) { applyPreset(); }
        zIn.max = String(s.depth - 1); zIn.value = String(s.z); zIn.disabled = s.depth <= 1;
        el("v-z-text").textContent = (s.z + 1) + " / " + s.depth;
        var missing = [];
        if (!current.lab) { missing.push("label"); }
        if (!current.pred) { missing.push("prediction"); }
        status.textContent = s.case + " (" + s.width + "×" + s.height + (s.depth > 1 ? "×" + s.depth : "") + ", " +
          (s.modality || "image") + ")" + (missing.length ? "; no " + missing.join(", ") : "");
        draw();
      })
      .catch(function (err) { status.textContent = "failed: " + err; });
  }

  function step(delta) {
    if (!current || current.depth <= 1) { return; }
    var z = Math.max(0, Math.min(current.depth - 1, Number(zIn.value) + delta));
    if (z === Number(zIn.value)) { return; }
    zIn.value = String(z); zIn.dataset.touched = "1"; load();
  }
  function setZoom(z) { zoom = Math.max(1, Math.min(16, z)); draw(); }

  function fillCases() {
    caseSel.innerHTML = "";
    (cases[split.value] || []).forEach(function (c) {
      var o = document.createElement("option"); o.value = c; o.textContent = c; caseSel.appendChild(o);
    });
    delete zIn.dataset.touched;
  }

  Object.keys(cases).forEach(function (s) {
    var o = document.createElement("option"); o.value = s; o.textContent = s; split.appendChild(o);
  });
  var legend = el("v-legend");
  Object.keys(labels).forEach(function (name) {
    var v = labels[name];
    if (v <= 0) { return; }
    var li = document.createElement("li"), c = colour(v);
    li.innerHTML = '<span class="swatch"></span>';
    li.firstChild.style.background = "rgb(" + c.join(",") + ")";
    li.appendChild(document.createTextNode(" " + name));
    legend.appendChild(li);
  });
  split.addEventListener("change", function () { fillCases(); load(); });
  caseSel.addEventListener("change", function () { delete zIn.dataset.touched; load(); });
  zIn.addEventListener("input", function () { zIn.dataset.touched = "1"; load(); });
  canvas.addEventListener("wheel", function (ev) {
    if (ev.ctrlKey) { ev.preventDefault(); setZoom(zoom * (ev.deltaY < 0 ? 2 : 0.5)); return; }
    if (!current || current.depth <= 1) { return; }
    ev.preventDefault();
    step(ev.deltaY > 0 ? 1 : -1);
  }, { passive: false });
  canvas.tabIndex = 0;
  canvas.addEventListener("keydown", function (ev) {
    if (ev.key === "ArrowUp" || ev.key === "PageUp") { ev.preventDefault(); step(-1); }
    if (ev.key === "ArrowDown" || ev.key === "PageDown") { ev.preventDefault(); step(1); }
    if (ev.key === "+" || ev.key === "=") { setZoom(zoom * 2); }
    if (ev.key === "-") { setZoom(zoom / 2); }
  });
  el("v-zoom-in").addEventListener("click", function () { setZoom(zoom * 2); });
  el("v-zoom-out").addEventListener("click", function () { setZoom(zoom / 2); });
  preset.addEventListener("change", function () { applyPreset(); draw(); });
  [wIn, lIn].forEach(function (inp) {
    inp.addEventListener("input", function () { if (preset.value === "auto") { preset.value = "custom"; } draw(); });
  });
  ["v-label", "v-pred", "v-alpha"].forEach(function (id) { el(id).addEventListener("input", draw); });
  fillCases();
  load();
})();
