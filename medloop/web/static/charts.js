// Interactive charts: every `.ichart[data-chart]` (server-made SVG + its full data) becomes a
// uPlot chart: drag to zoom (double-click resets), values of every series on hover in the
// legend. Without uPlot (or without scripts) the SVG stays.
(function () {
  "use strict";
  if (typeof window.uPlot !== "function") { return; }
  var INTEGER_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];

  function fmt(v) {
    if (v == null) { return "–"; }
    var a = Math.abs(v);
    return a !== 0 && (a >= 1000 || a < 0.01) ? v.toPrecision(3) : String(+v.toFixed(4));
  }

  function build(box) {
    var spec = JSON.parse(box.dataset.chart);
    var svg = box.querySelector("svg");
    var width = Math.max(320, Math.min(box.clientWidth || 0, 1200) || (svg ? +svg.getAttribute("width") : 640));
    var height = +(box.dataset.height || 280);
    var series = [{ label: spec.x_label || "x", value: function (u, v) { return v == null ? "–" : fmt(v); } }];
    var data = [spec.x];
    spec.series.forEach(function (s) {
      var opt = { label: s.name, stroke: s.colour, width: s.dots ? 0 : 2, spanGaps: !s.dots,
                  value: function (u, v) { return fmt(v); } };
      if (s.dashed) { opt.dash = [6, 4]; }
      if (s.dots) { opt.paths = function () { return null; }; opt.points = { show: true, size: 6, fill: s.colour, stroke: s.colour }; }
      else { opt.points = { show: false }; }
      if (s.step && uPlot.paths && uPlot.paths.stepped) { opt.paths = uPlot.paths.stepped({ align: 1 }); }
      series.push(opt);
      data.push(s.y);
    });
    var xAxis = { label: spec.x_label, stroke: "#57606a", grid: { stroke: "#eaeef2" } };
    if (spec.integer_x) {
      xAxis.incrs = INTEGER_INCRS;
      xAxis.values = function (u, ticks) { return ticks.map(function (t) { return Number.isInteger(t) ? String(t) : ""; }); };
    }
    var opts = {
      title: spec.title, width: width, height: height,
      scales: { x: { time: false } },
      axes: [xAxis, { label: spec.y_label, stroke: "#57606a", grid: { stroke: "#eaeef2" }, size: 60 }],
      series: series,
      cursor: { drag: { x: true, y: false }, points: { size: 7 } },
      legend: { live: true },
    };
    var holder = document.createElement("div");
    holder.className = "uplot-holder";
    box.appendChild(holder);
    var chart = new uPlot(opts, data, holder);
    if (svg) { svg.style.display = "none"; }
    box.dataset.ready = "1";
    box.uplot = chart;
    return chart;
  }

  function init(root) {
    (root || document).querySelectorAll(".ichart[data-chart]").forEach(function (box) {
      if (box.dataset.ready) { return; }
      try { build(box); } catch (err) { box.dataset.error = String(err); }
    });
  }
  window.medloopCharts = { init: init };
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", function () { init(); }); }
  else { init(); }
})();
