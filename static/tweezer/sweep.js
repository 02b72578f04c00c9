// Issue 21 charts: a sweep (points with error bars, one line per series) and the credits
// burn-down (balance, then the forecast). Data comes from <script type="application/json">.
(function () {
  "use strict";
  const palette = ["#3b5bdb", "#12b76a", "#f79009", "#d92d20", "#7a5af8", "#2e90fa", "#ee46bc", "#667085"];

  function readJson(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  // Chart.js draws no error bars: each point's ±err is drawn as a vertical line after the datasets.
  const errorBars = {
    id: "errorBars",
    afterDatasetsDraw: function (chart) {
      const ctx = chart.ctx;
      const y = chart.scales.y;
      chart.data.datasets.forEach(function (dataset, i) {
        const meta = chart.getDatasetMeta(i);
        if (meta.hidden) return;
        ctx.save();
        ctx.strokeStyle = dataset.borderColor;
        ctx.lineWidth = 1.2;
        meta.data.forEach(function (element, j) {
          const point = dataset.data[j];
          if (!point || !point.err) return;
          const top = y.getPixelForValue(point.y + point.err);
          const bottom = y.getPixelForValue(point.y - point.err);
          ctx.beginPath();
          ctx.moveTo(element.x, top); ctx.lineTo(element.x, bottom);
          ctx.moveTo(element.x - 4, top); ctx.lineTo(element.x + 4, top);
          ctx.moveTo(element.x - 4, bottom); ctx.lineTo(element.x + 4, bottom);
          ctx.stroke();
        });
        ctx.restore();
      });
    },
  };

  function drawSweep(canvas) {
    const spec = JSON.parse(canvas.getAttribute("data-sweep") || "null");
    if (!spec || canvas.dataset.drawn) return;
    canvas.dataset.drawn = "1";
    const labels = [];
    if (!spec.numeric_x) {
      spec.datasets.forEach(function (d) { d.points.forEach(function (p) { if (labels.indexOf(p.x) < 0) labels.push(p.x); }); });
    }
    const datasets = spec.datasets.map(function (d, i) {
      const color = palette[i % palette.length];
      return {
        label: d.label, borderColor: color, backgroundColor: color, showLine: true, pointRadius: 3, tension: 0,
        data: d.points.map(function (p) { return { x: p.x, y: p.y, err: p.err, shots: p.shots }; }),
      };
    });
    // The y scale spans the error bars, not only the points: a bar must not cross the axis.
    let low = Infinity, high = -Infinity;
    spec.datasets.forEach(function (d) {
      d.points.forEach(function (p) { low = Math.min(low, p.y - (p.err || 0)); high = Math.max(high, p.y + (p.err || 0)); });
    });
    new window.Chart(canvas, {
      type: "line",
      data: { labels: spec.numeric_x ? undefined : labels, datasets: datasets },
      plugins: [errorBars],
      options: {
        animation: false, responsive: true, maintainAspectRatio: false, parsing: true,
        plugins: {
          legend: { display: datasets.length > 1, position: "bottom" },
          tooltip: { callbacks: { label: function (c) { const p = c.raw; return c.dataset.label + ": " + p.y.toPrecision(4) + " ± " + p.err.toPrecision(2) + " (" + p.shots + " shots)"; } } },
        },
        scales: {
          x: { type: spec.numeric_x ? "linear" : "category", title: { display: true, text: spec.x } },
          y: { grace: "5%", suggestedMin: isFinite(low) ? low : undefined, suggestedMax: isFinite(high) ? high : undefined, title: { display: true, text: spec.label } },
        },
      },
    });
  }

  function drawBurnDown(canvas) {
    const spec = readJson(canvas.getAttribute("data-burndown"));
    if (!spec || canvas.dataset.drawn) return;
    canvas.dataset.drawn = "1";
    new window.Chart(canvas, {
      type: "line",
      data: {
        labels: spec.labels,
        datasets: [
          { label: "Balance", data: spec.balance, borderColor: palette[0], backgroundColor: palette[0], pointRadius: 0, tension: 0 },
          { label: "Forecast", data: spec.forecast, borderColor: palette[3], backgroundColor: palette[3], borderDash: [6, 4], pointRadius: 0, tension: 0 },
        ],
      },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { position: "bottom" } },
        scales: { x: { grid: { display: false } }, y: { beginAtZero: true, title: { display: true, text: "credits" } } },
      },
    });
  }

  function drawAll() {
    if (typeof window.Chart === "undefined") return;
    document.querySelectorAll("canvas[data-sweep]").forEach(drawSweep);
    document.querySelectorAll("canvas[data-burndown]").forEach(drawBurnDown);
  }
  document.addEventListener("DOMContentLoaded", drawAll);
  document.addEventListener("htmx:afterSettle", drawAll);
})();
