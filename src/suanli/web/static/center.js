// A center's load over the last 7 days, from the data the page carries: each pool's share of its
// units in use (left axis, %) and the center's compute in use (right axis, P), hour by hour.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("chart-load");
  if (!el || !window.echarts) return;
  const load = JSON.parse(el.dataset.series || "{}");
  const hours = load.hours || [];
  const pools = load.pools || [];
  const at = (values) => hours.map((h, i) => [h, values[i]]);
  const series = pools.map((pl) => ({
    name: pl.name + " (" + pl.units + ")", type: "line", showSymbol: false, yAxisIndex: 0,
    data: at(pl.percent),
  }));
  series.push({
    name: el.dataset.pflopsLabel || "P", type: "line", showSymbol: false, yAxisIndex: 1,
    lineStyle: { type: "dashed" }, areaStyle: { opacity: 0.15 }, data: at(load.pflops || []),
  });
  const dark = false;
  echarts.init(el, null, { locale: window.suanliChartLocale() }).setOption(Object.assign(window.suanliChartBase(dark), {
    animation: false, tooltip: { trigger: "axis" }, legend: { top: 0 },
    grid: { top: 40, left: 50, right: 60 },
    xAxis: { type: "time" },
    yAxis: [{ type: "value", name: "%", min: 0, max: 100 }, { type: "value", name: "P" }],
    series: series,
  }));
  // the figures as a table: each hour, each pool's share of its units in use, the P in use
  window.suanliTable("chart-load-data", [el.dataset.hourLabel || "", ...pools.map((pl) => pl.name + " (%)"),
    (el.dataset.pflopsLabel || "") + " (P)"],
    hours.map((h, i) => [String(h).slice(0, 16).replace("T", " "), ...pools.map((pl) => pl.percent[i]),
                         (load.pflops || [])[i]]));
  el.dataset.pools = String(pools.length);
  el.dataset.points = String(hours.filter((h, i) => (load.pflops || [])[i] > 0
    || pools.some((pl) => pl.busy[i] > 0)).length);
});
