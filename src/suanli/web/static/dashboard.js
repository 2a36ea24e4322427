// The city dashboard: ECharts fed by /dashboard/data.json, refreshed every 30 s.
"use strict";

(function () {
  const root = document.getElementById("dashboard");
  if (!root || !window.echarts) return;
  const L = JSON.parse(root.dataset.labels);
  const dark = root.classList.contains("screen");
  const charts = {};
  let mapReady = false;

  function chart(id) {
    if (!charts[id]) {
      charts[id] = echarts.init(document.getElementById(id), dark ? "dark" : null,
                                { locale: window.suanliChartLocale() });
    }
    return charts[id];
  }
  // draw a chart, and its figures as the table under it (head: column names, rows: values)
  function show(id, option, points, head, rows) {
    option.title = Object.assign({ textStyle: { fontSize: 14 } }, option.title);
    option = Object.assign(window.suanliChartBase(dark), option);
    if (head) window.suanliTable(id + "-data", head, rows);
    const t0 = performance.now();
    chart(id).setOption(option, true);
    performance.measure("chart " + id, { start: t0 });  // read by bench/dashboard.py
    document.getElementById(id).dataset.points = String(points);  // what the browser tests read
  }
  const P = (v) => Math.round(v * 1000) / 1000;
  // 3 significant digits, never in scientific notation (toPrecision gives 1.23e-7)
  const Pkpi = (v) => (v >= 1 ? v.toFixed(1) : v > 0
    ? v.toFixed(Math.min(20, 2 - Math.floor(Math.log10(v)))).replace(/0+$/, "") : "0");
  const yuan = (fen) => fen / 100;

  async function loadMap() {
    const r = await fetch("/static/vendor/qingdao.geojson");
    echarts.registerMap("qingdao", await r.json());
    mapReady = true;
  }
  async function fetchData() {
    try {
      const r = await fetch(root.dataset.src, { credentials: "same-origin" });
      return r.ok ? await r.json() : null;
    } catch (e) { return null; }  // try again on the next tick
  }

  function render(d) {
    document.getElementById("kpi-peak").textContent = Pkpi(d.peak.pflops) + " P";
    document.getElementById("kpi-enterprises").textContent = String(d.enterprises_served.all_time);
    document.getElementById("kpi-jobs").textContent = d.jobs_total.toLocaleString();
    document.getElementById("kpi-domestic").textContent = (d.domestic_share * 100).toFixed(1) + " %";

    const kinds = Object.keys(d.capacity.by_kind);
    show("chart-capacity-kind", {
      title: { text: L.capacity_kind },
      tooltip: {}, yAxis: { type: "value" },
      xAxis: { type: "category", data: kinds.map((k) => L.kinds[k] || k), axisLabel: { interval: 0 } },
      series: [{ type: "bar", name: "FP16", data: kinds.map((k) => P(d.capacity.by_kind[k].total_pflops.fp16)) },
               { type: "bar", name: "FP64", data: kinds.map((k) => P(d.capacity.by_kind[k].total_pflops.fp64)) }],
      legend: { bottom: 0 },
    }, kinds.length, [L.col.kind, "FP16 P", "FP64 P"],
    kinds.map((k) => [L.kinds[k] || k, P(d.capacity.by_kind[k].total_pflops.fp16),
                      P(d.capacity.by_kind[k].total_pflops.fp64)]));

    const precs = Object.keys(d.capacity.total.total_pflops);
    show("chart-capacity-precision", {
      title: { text: L.capacity_precision }, tooltip: {},
      xAxis: { type: "category", data: precs }, yAxis: { type: "value" },
      series: [{ type: "bar", data: precs.map((p) => P(d.capacity.total.total_pflops[p])) }],
    }, precs.length, [L.col.precision, "P"],
    precs.map((p) => [p.toUpperCase(), P(d.capacity.total.total_pflops[p])]));

    show("chart-utilization", {
      title: { text: L.utilization + " · " + L.peak + " " + Pkpi(d.peak.pflops) + " P" },
      tooltip: { trigger: "axis" }, xAxis: { type: "time" }, legend: { bottom: 0 },
      yAxis: [{ type: "value", name: "P" }, { type: "value", name: "%", min: 0 }],
      series: [{ type: "line", name: L.compute_in_use, showSymbol: false, areaStyle: {},
                 data: d.utilization.map((u) => [u.hour, u.pflops]),
                 markPoint: { data: [{ type: "max", name: L.peak }] } },
               { type: "line", name: L.units_share, showSymbol: false, yAxisIndex: 1,
                 lineStyle: { type: "dashed", width: 1 },
                 data: d.utilization.map((u) => [u.hour, u.percent]) }],
    }, d.utilization.length, [L.col.hour, L.compute_in_use + " (P)", L.units_share + " (%)"],
    d.utilization.map((u) => [String(u.hour).slice(0, 16).replace("T", " "), P(u.pflops), u.percent]));

    show("chart-jobs", {
      title: { text: L.jobs_per_day }, tooltip: { trigger: "axis" },
      xAxis: { type: "category", data: d.jobs_per_day.map((j) => j.day) }, yAxis: { type: "value" },
      series: [{ type: "bar", data: d.jobs_per_day.map((j) => j.jobs) }],
    }, d.jobs_per_day.length, [L.col.day, L.col.jobs], d.jobs_per_day.map((j) => [j.day, j.jobs]));

    const dom = d.domestic_share;
    show("chart-domestic", {
      title: { text: L.domestic_share }, tooltip: {},
      series: [{ type: "pie", radius: ["45%", "70%"],
                 label: { formatter: "{b}: {d} %" },
                 data: [{ name: L.domestic, value: P(dom * 100) }, { name: L.other, value: P((1 - dom) * 100) }] }],
    }, 2, [L.col.kind, L.col.share + " (%)"],
    [[L.domestic, P(dom * 100)], [L.other, P((1 - dom) * 100)]]);

    if (d.vouchers) {
      const b = d.vouchers.burn_down;
      show("chart-burn", {
        title: { text: L.burn_down + " · " + d.vouchers.name }, tooltip: { trigger: "axis" }, legend: { bottom: 0 },
        xAxis: { type: "category", data: b.map((x) => x.month) }, yAxis: { type: "value", name: "¥" },
        series: [{ type: "line", name: L.left, data: b.map((x) => yuan(x.left_fen)) },
                 { type: "line", name: L.plan, lineStyle: { type: "dashed" }, data: b.map((x) => yuan(x.plan_left_fen)) }],
      }, b.length, [L.col.month, L.left + " (¥)", L.plan + " (¥)"],
      b.map((x) => [x.month, yuan(x.left_fen).toFixed(2), yuan(x.plan_left_fen).toFixed(2)]));
    }

    if (mapReady) {
      const byDistrict = {};
      for (const c of d.centers) {
        const k = c.district || "-";
        byDistrict[k] = byDistrict[k] || { busy: 0, units: 0, names: [] };
        byDistrict[k].busy += c.busy_units; byDistrict[k].units += c.units; byDistrict[k].names.push(c.slug);
      }
      const data = Object.entries(byDistrict).map(([name, v]) => ({
        name, value: v.units ? Math.round((100 * v.busy) / v.units) : 0, centers: v.names.join(", ") }));
      root.dataset.mapLabels = "1";  // what the browser tests read: districts are labelled
      show("chart-map", {
        title: { text: L.map },
        tooltip: { formatter: (p) => p.name + (p.data ? ": " + p.data.value + " % (" + p.data.centers + ")" : "") },
        // the legend: large enough to read, in the page's text colour (on the wall display too)
        visualMap: { min: 0, max: 100, right: 16, bottom: 16, text: ["100 %", "0 %"], calculable: false,
                     itemWidth: 18, itemHeight: 160, textGap: 8,
                     textStyle: { fontSize: 14, color: dark ? "#e8eef6" : "#1b2430" },
                     inRange: { color: ["#d8ecff", "#5aa2e6", "#0b4f9c"] } },
        series: [{ type: "map", map: "qingdao", roam: true, data,
                   // every district named on the map, dark text on light shapes and light on dark
                   label: { show: true, fontSize: 12, color: "#1b2430", textBorderColor: "#ffffff",
                            textBorderWidth: 2 },
                   emphasis: { label: { show: true, fontSize: 14, fontWeight: "bold" } } }],
      }, data.length, [L.col.district, L.col.busy + " (%)", L.col.centers],
      data.map((x) => [x.name, x.value, x.centers]));
      // every chart has drawn: ms since the navigation started (read by bench/dashboard.py)
      if (!root.dataset.drawnMs) root.dataset.drawnMs = String(Math.round(performance.now()));
    }
  }

  // The national view: this node and the member nodes that report to it (federation).
  async function renderNetwork(net) {
    if (!net || !net.members || !net.members.length) return;
    const nodes = [net.self, ...net.members];
    const card = document.getElementById("network-card");
    card.hidden = false;
    const rows = nodes.map((n) => {
      const ex = (n.exchanged || []).map((e) => e.peer + " " + (e.lent_runs != null ? "↔" + e.lent_runs : "←" + e.borrowed_runs)).join(", ");
      const fp16 = P((n.capacity.total_pflops || {}).fp16 || 0);
      return "<tr><td>" + esc(n.name || n.network_id) + "</td><td>" + esc(n.network_id) + "</td><td>" + fp16 +
        "</td><td>" + Math.round(100 * (n.utilisation || 0)) + " %</td><td>" + esc(ex || "-") + "</td><td>" +
        esc(n.received_at ? String(n.received_at).slice(0, 16).replace("T", " ") : "-") + "</td></tr>";
    });
    card.querySelector("tbody").innerHTML = rows.join("");
    const placed = nodes.filter((n) => n.location);
    const el = document.getElementById("chart-network");
    el.hidden = false;
    let geo = null;
    try {
      const r = await fetch("/static/vendor/" + encodeURIComponent(net.map) + ".geojson");
      if (r.ok) { echarts.registerMap(net.map, await r.json()); geo = net.map; }
    } catch (e) { geo = null; }
    const points = placed.map((n) => ({ name: n.name || n.network_id,
      value: [n.location[0], n.location[1], Math.round(100 * (n.utilisation || 0))] }));
    const byId = Object.fromEntries(placed.map((n) => [n.network_id, n.location]));
    const lines = [];
    for (const n of placed) for (const e of n.exchanged || []) {
      if (byId[e.network_id] && (e.lent_runs || e.borrowed_runs)) lines.push({ coords: [n.location, byId[e.network_id]] });
    }
    const coord = geo ? { geo: { map: geo, roam: true, itemStyle: { areaColor: dark ? "#23344a" : "#eef4fb" } } }
                      : { xAxis: { type: "value", scale: true }, yAxis: { type: "value", scale: true } };
    const sys = geo ? { coordinateSystem: "geo" } : {};
    show("chart-network", Object.assign({
      title: { text: L.network },
      tooltip: { formatter: (p) => p.name + (p.value && p.value.length > 2 ? ": " + L.load + " " + p.value[2] + " %" : "") },
      series: [Object.assign({ type: "effectScatter", data: points, symbolSize: 14,
                               label: { show: true, formatter: "{b}", position: "right" } }, sys),
               Object.assign({ type: "lines", data: lines, effect: { show: true, symbolSize: 5 },
                               lineStyle: { width: 2, curveness: 0.2 } }, sys)],
    }, coord), points.length);
  }
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  async function refresh() {
    const d = await fetchData();
    if (d) { render(d); renderNetwork(d.network); }
  }

  window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
  // the map's shapes and the figures load at once; the charts draw when both are there
  Promise.all([loadMap().catch(() => null), fetchData()]).then(([, d]) => {
    if (d) { render(d); renderNetwork(d.network); }
  });
  setInterval(refresh, 30000);
})();
