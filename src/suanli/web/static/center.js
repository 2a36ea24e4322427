// A center's hourly compute in use (P), from the data the page carries.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("chart-load");
  if (!el || !window.echarts) return;
  const series = JSON.parse(el.dataset.series || "[]");
  echarts.init(el).setOption({
    tooltip: { trigger: "axis" }, xAxis: { type: "time" }, yAxis: { type: "value", name: "P" },
    series: [{ type: "line", showSymbol: false, areaStyle: {}, data: series.map((u) => [u.hour, u.pflops]) }],
  });
  el.dataset.points = String(series.length);
});
