// Admin index: draws the three usage charts from the JSON the template embeds (json_script), with
// the vendored Chart.js (static/vendor/chart.umd.min.js). A separate file, not an inline script, so
// a Content-Security-Policy without 'unsafe-inline' keeps working.
(function () {
  "use strict";
  var source = document.getElementById("usage-chart-data");
  if (!source || typeof Chart === "undefined") return;
  var data = JSON.parse(source.textContent);
  var models = Object.keys(data.models);
  // the palette of admin-charts.js, so a model keeps one colour on every admin chart
  var COLOURS = ["#417690", "#e0a458", "#79aec8", "#c0392b", "#5b8c5a", "#8e6bb8", "#d4a017", "#7f8c8d"];
  var metrics = [["usage-chart-requests", "requests"], ["usage-chart-tokens", "tokens"], ["usage-chart-errors", "errors"]];
  metrics.forEach(function (pair) {
    var canvas = document.getElementById(pair[0]);
    if (!canvas) return;
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.hours,
        datasets: models.map(function (model, i) {
          var colour = COLOURS[i % COLOURS.length];
          return { label: model, data: data.models[model][pair[1]], backgroundColor: colour, borderColor: colour };
        })
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
