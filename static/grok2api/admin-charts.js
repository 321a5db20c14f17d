// Admin charts (issue 20): draws every chart spec a page embeds with json_script (ids starting with
// "g2a-charts"; the specs come from gateway/charts.py) on its <canvas>, with the vendored
// Chart.js (static/vendor/chart.umd.min.js). A static file, not an inline script, so the
// Content-Security-Policy needs no 'unsafe-inline'.
(function () {
  "use strict";
  if (typeof Chart === "undefined") return;
  // Fixed colours per dataset position, so "remaining"/"used" and the models keep theirs across charts.
  var COLOURS = ["#417690", "#e0a458", "#79aec8", "#c0392b", "#5b8c5a", "#8e6bb8", "#d4a017", "#7f8c8d"];
  var USED = "#d5dde3";

  function number(v) {
    return typeof v === "number" ? v.toLocaleString("en-US") : v;
  }

  function draw(spec) {
    var canvas = document.getElementById(spec.canvas);
    if (!canvas) return;
    var horizontal = spec.kind === "hbar";
    if (horizontal && canvas.parentElement) {
      // one band per label, so ten pool modes are as readable as two (CSSOM, which the CSP allows)
      var band = spec.stacked ? 26 : 14 + 12 * spec.datasets.length;
      canvas.parentElement.style.height = Math.max(120, spec.labels.length * band + 64) + "px";
    }
    var capacity = spec.datasets.length === 2 && spec.datasets[1].label === "used";
    var datasets = spec.datasets.map(function (d, i) {
      var colour = capacity && i === 1 ? USED : COLOURS[i % COLOURS.length];
      return { label: d.label, data: d.data, notes: d.notes, backgroundColor: colour, borderColor: colour,
               maxBarThickness: 28 };
    });
    var valueAxis = { beginAtZero: true, stacked: spec.stacked, ticks: { precision: 0 } };
    if (spec.percent) {
      valueAxis.suggestedMax = 100;
      valueAxis.ticks.callback = function (v) { return v + " %"; };
    }
    var categoryAxis = { stacked: spec.stacked, ticks: { autoSkip: !horizontal } };
    new Chart(canvas, {
      type: "bar",
      data: { labels: spec.labels, datasets: datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        indexAxis: horizontal ? "y" : "x",
        scales: horizontal ? { x: valueAxis, y: categoryAxis } : { x: categoryAxis, y: valueAxis },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              label: function (ctx) {
                var notes = ctx.dataset.notes || spec.notes || [];
                var note = notes[ctx.dataIndex];
                var value = spec.percent ? ctx.parsed[horizontal ? "x" : "y"] + " %" : number(ctx.parsed[horizontal ? "x" : "y"]);
                return ctx.dataset.label + ": " + value + (note ? " (" + note + ")" : "");
              }
            }
          }
        }
      }
    });
  }

  function start() {
    var sources = document.querySelectorAll('script[type="application/json"][id^="g2a-charts"]');
    for (var i = 0; i < sources.length; i++) {
      JSON.parse(sources[i].textContent).forEach(draw);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
