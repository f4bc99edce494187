// Live campaign page: the server sends `change` events (server-sent events) whenever
// trials, hypotheses, cycles, claims or the status change; the page body is re-fetched.
(function () {
  "use strict";
  var body = document.getElementById("campaign-body");
  if (!body || body.dataset.live !== "on" || !window.EventSource) { return; }
  var id = body.dataset.campaign;
  var busy = false;
  function refresh() {
    if (busy) { return; }
    busy = true;
    fetch("/campaigns/" + encodeURIComponent(id) + "?partial=1", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) {
          body.innerHTML = html; body.dataset.updated = String(Date.now());
          if (window.medloopCharts) { window.medloopCharts.init(body); }
        }
      })
      .finally(function () { busy = false; });
  }
  var source = new EventSource("/campaigns/" + encodeURIComponent(id) + "/events");
  source.addEventListener("change", refresh);
})();
