// suanli portal: no inline scripts (the CSP forbids them); behaviour lives here.
"use strict";

// Follow a job's log while it runs: fetch from the last offset, append as text (never HTML);
// when the job has ended and everything is read, reload once to show its final state.
function followLogs(pre) {
  let offset = 0;
  const wasDone = pre.dataset.done === "1";
  async function step() {
    let done = false;
    let got = false;
    try {
      const r = await fetch(pre.dataset.src + "?offset=" + offset, { credentials: "same-origin" });
      if (r.ok) {
        const text = await r.text();
        if (text) { pre.append(document.createTextNode(text)); got = true; }
        offset = parseInt(r.headers.get("X-Next-Offset") || String(offset), 10);
        done = r.headers.get("X-Done") === "1";
      }
    } catch (e) { /* the server may be restarting: try again */ }
    if (done) {
      if (!wasDone) setTimeout(() => window.location.reload(), 300);
      return;
    }
    setTimeout(step, got ? 200 : 1000);
  }
  step();
}

document.addEventListener("DOMContentLoaded", () => {
  const pre = document.getElementById("logs");
  if (pre) followLogs(pre);
});
