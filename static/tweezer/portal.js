// Tweezer portal behaviour: confirmations, job selection, charts. No inline scripts (CSP).
(function () {
  "use strict";

  // Destructive buttons carry data-confirm; the browser's dialog asks before the form submits.
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopPropagation();
    }
  }, true);

  function jobBoxes() {
    return Array.from(document.querySelectorAll('input[type="checkbox"][name="job"]'));
  }

  function updateSelected() {
    const counter = document.getElementById("selected-count");
    if (!counter) return;
    const boxes = jobBoxes();
    const checked = boxes.filter(function (b) { return b.checked; }).length;
    counter.textContent = checked + " selected";
    const all = document.getElementById("select-all");
    if (all) {
      all.checked = boxes.length > 0 && checked === boxes.length;
      all.indeterminate = checked > 0 && checked < boxes.length;
    }
  }

  document.addEventListener("change", function (event) {
    if (event.target.id === "select-all") {
      jobBoxes().forEach(function (b) { b.checked = event.target.checked; });
    }
    updateSelected();
  });
  document.addEventListener("htmx:afterSettle", updateSelected);
  document.addEventListener("DOMContentLoaded", updateSelected);

  // Countdowns (an idle open batch's time-out) tick each second from the seconds the server
  // counted when it rendered them: no clock skew between server and browser. A live update
  // replaces the element, and with it the starting point.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tickCountdowns() {
    document.querySelectorAll(".countdown[data-seconds]").forEach(function (el) {
      if (el.tweezerStart === undefined) el.tweezerStart = Date.now();
      const left = Math.max(0, Number(el.getAttribute("data-seconds")) - Math.floor((Date.now() - el.tweezerStart) / 1000));
      const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = (h ? h + ":" + pad(m) : pad(m)) + ":" + pad(s);
    });
  }
  window.setInterval(tickCountdowns, 1000);

  // Copy buttons: data-copy names the element whose text goes to the clipboard.
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      const label = button.textContent;
      button.textContent = "Copied";
      window.setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  // Charts: data comes from <script type="application/json"> blocks (data, never executed).
  const palette = ["#3b5bdb", "#12b76a", "#f79009", "#d92d20", "#7a5af8", "#2e90fa", "#ee46bc", "#667085"];

  function readJson(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function drawCharts() {
    if (typeof window.Chart === "undefined") return;
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      const spec = readJson(canvas.getAttribute("data-chart"));
      if (!spec) return;
      const datasets = spec.datasets.map(function (d, i) {
        return { label: d.label, data: d.data, backgroundColor: palette[i % palette.length], borderRadius: 3, maxBarThickness: 56 };
      });
      new window.Chart(canvas, {
        type: "bar",
        data: { labels: spec.labels, datasets: datasets },
        options: {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          indexAxis: spec.horizontal ? "y" : "x",
          plugins: { legend: { display: datasets.length > 1, position: "bottom" } },
          scales: {
            x: { stacked: !!spec.stacked, grid: { display: false } },
            y: { stacked: !!spec.stacked, beginAtZero: true, title: { display: !!spec.unit, text: spec.unit || "" } },
          },
        },
      });
    });
  }
  document.addEventListener("DOMContentLoaded", drawCharts);
})();
