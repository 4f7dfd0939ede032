// Posterity dashboard: the only script. Tables work without it; it shows times in the
// viewer's timezone (UTC stays on hover) and draws the charts with the vendored uPlot.
(function () {
  "use strict";
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var iso = el.getAttribute("datetime");
    var d = new Date(iso);
    if (isNaN(d)) return;
    el.title = d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
    el.textContent = d.toLocaleString();
  });

  if (typeof uPlot === "undefined") return;
  var RED = "#c0262d", AMBER = "#9a6700", BLUE = "#0969da";
  function marks(color) {
    return { paths: function () { return null; }, points: { show: true, size: 9, fill: color, stroke: color } };
  }
  function sourceChart(pts) {
    var xs = [], size = [], secs = [], anomaly = [], failed = [];
    pts.forEach(function (p) {
      if (p.t == null) return;
      xs.push(p.t);
      var mib = p.failed ? null : p.size / 1048576;
      size.push(mib);
      secs.push(p.failed ? null : p.seconds);
      anomaly.push(p.anomaly ? mib : null);
      failed.push(p.failed ? 0 : null);
    });
    return {
      data: [xs, size, secs, anomaly, failed],
      series: [{}, { label: "stored MiB", stroke: BLUE, width: 2, spanGaps: true, scale: "MiB" },
        { label: "took s", stroke: "rgba(87,96,106,0.55)", width: 1, spanGaps: true, scale: "s" },
        Object.assign({ label: "size anomaly", scale: "MiB" }, marks(AMBER)),
        Object.assign({ label: "failed", scale: "MiB" }, marks(RED))],
      axes: [{}, { scale: "MiB", label: "MiB" }, { scale: "s", side: 1, label: "s", grid: { show: false } }],
    };
  }
  function drillChart(pts) {
    var xs = [], ok = [], bad = [];
    pts.forEach(function (p) {
      if (p.t == null) return;
      xs.push(p.t);
      ok.push(p.ok ? p.rto : null);
      bad.push(p.ok ? null : (p.rto == null ? 0 : p.rto));
    });
    return {
      data: [xs, ok, bad],
      series: [{}, { label: "RTO s", stroke: BLUE, width: 2, spanGaps: true, points: { show: true } },
        Object.assign({ label: "failed drill" }, marks(RED))],
      axes: [{}, { label: "s" }],
    };
  }
  document.querySelectorAll("[data-chart]").forEach(function (el) {
    var src = document.getElementById(el.getAttribute("data-source"));
    var pts = JSON.parse(src ? src.textContent : "[]");
    var spec = el.getAttribute("data-chart") === "drills" ? drillChart(pts) : sourceChart(pts);
    if (!spec.data[0].length) { el.textContent = "Nothing to chart yet."; return; }
    var width = Math.max(280, el.clientWidth || 600);
    var plot = new uPlot({ width: width, height: 240, series: spec.series, axes: spec.axes,
      scales: { x: { time: true } }, legend: { live: true } }, spec.data, el);
    el.setAttribute("data-drawn", String(spec.data[0].length));
    window.addEventListener("resize", function () { plot.setSize({ width: Math.max(280, el.clientWidth), height: 240 }); });
  });
})();
