// Admin index: draws the three usage charts from the JSON the template embeds (json_script), with
// the vendored Chart.js (static/vendor/chart.umd.min.js). A separate file, not an inline script, so
// a Content-Security-Policy without 'unsafe-inline' keeps working.
(function () {
  "use strict";
  var source = document.getElementById("usage-chart-data");
  if (!source || typeof Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  var models = Object.keys(data.models);
  var metrics = [["usage-chart-requests", "requests"], ["usage-chart-tokens", "tokens"], ["usage-chart-errors", "errors"]];
  metrics.forEach(function (pair) {
    var canvas = document.getElementById(pair[0]);
    if (!canvas) return;
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.hours,
        datasets: models.map(function (model) { return { label: model, data: data.models[model][pair[1]] }; })
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } },
        plugins: { legend: { position: "bottom" } }
      }
    });
  });
})();
