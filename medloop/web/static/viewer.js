// Slice viewer: image in grey, the reference label as an outline and the prediction as
// a tint, per class colour. Data: GET /api/v1/trials/{id}/slices (uint8 arrays, base64).
(function () {
  "use strict";
  var root = document.getElementById("viewer");
  if (!root) { return; }
  var PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180]];
  var trial = root.dataset.trial;
  var cases = JSON.parse(root.dataset.cases);
  var labels = JSON.parse(root.dataset.labels);
  var canvas = document.getElementById("slice-canvas");
  var ctx = canvas.getContext("2d");
  var el = function (id) { return document.getElementById(id); };
  var split = el("v-split"), caseSel = el("v-case"), zIn = el("v-z"), status = el("v-status");
  var current = null;

  function decode(b64) {
    if (!b64) { return null; }
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }
  function colour(v) { return PALETTE[(v - 1) % PALETTE.length]; }

  function draw() {
    if (!current) { return; }
    var w = current.width, h = current.height;
    canvas.width = w; canvas.height = h;
    var img = ctx.createImageData(w, h), px = img.data;
    var alpha = Number(el("v-alpha").value) / 100;
    var showLabel = el("v-label").checked && current.lab, showPred = el("v-pred").checked && current.pred;
    for (var i = 0; i < w * h; i++) {
      var g = current.img[i], r = g, gg = g, b = g;
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
    root.dataset.drawn = current.caseId + ":" + current.z;
  }

  function load() {
    var z = zIn.dataset.touched ? "&z=" + zIn.value : "";
    status.textContent = "loading…";
    fetch("/api/v1/trials/" + encodeURIComponent(trial) + "/slices?split=" + encodeURIComponent(split.value) +
          "&case=" + encodeURIComponent(caseSel.value) + z, { credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (j) { return { ok: r.ok, body: j }; }); })
      .then(function (res) {
        if (!res.ok) { status.textContent = res.body.error ? res.body.error.message : "failed"; return; }
        var s = res.body;
        current = { width: s.width, height: s.height, z: s.z, caseId: s.case,
                    img: decode(s.image), lab: decode(s.label), pred: decode(s.prediction) };
        zIn.max = String(s.depth - 1); zIn.value = String(s.z);
        el("v-z-text").textContent = (s.z + 1) + " / " + s.depth;
        var missing = [];
        if (!current.lab) { missing.push("label"); }
        if (!current.pred) { missing.push("prediction"); }
        status.textContent = s.case + " (" + s.width + "×" + s.height + ")" + (missing.length ? "; no " + missing.join(", ") : "");
        draw();
      })
      .catch(function (err) { status.textContent = "failed: " + err; });
  }

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
  ["v-label", "v-pred", "v-alpha"].forEach(function (id) { el(id).addEventListener("input", draw); });
  fillCases();
  load();
})();
