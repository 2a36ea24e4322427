// suanli portal: no inline scripts (the CSP forbids them); behaviour lives here.
"use strict";

// Follow one of a job's logs (stdout or stderr) while it runs: first its last `data-tail` bytes,
// then from the last offset on, appended as text (never HTML) and cut to the last `data-tail`
// characters (the "full log" link has everything). When the job has ended and everything is
// read, the stdout pane reloads the page once to show its final state.
function followLogs(pre) {
  const keep = parseInt(pre.dataset.tail || "65536", 10);
  const skippedNote = pre.parentElement.querySelector(".log-skipped");
  let offset = 0;
  let first = true;
  const wasDone = pre.dataset.done === "1";
  function cut() {
    const text = pre.textContent;
    if (text.length > keep) {
      pre.textContent = text.slice(text.length - keep);
      if (skippedNote) skippedNote.hidden = false;
    }
  }
  async function step() {
    let done = false;
    let got = false;
    try {
      const url = pre.dataset.src + "&offset=" + offset + (first ? "&tail=" + keep : "");
      const r = await fetch(url, { credentials: "same-origin" });
      if (r.ok) {
        const text = await r.text();
        if (first && parseInt(r.headers.get("X-Skipped") || "0", 10) > 0 && skippedNote) {
          skippedNote.hidden = false;
        }
        first = false;
        if (text) { pre.append(document.createTextNode(text)); got = true; cut(); }
        offset = parseInt(r.headers.get("X-Next-Offset") || String(offset), 10);
        done = r.headers.get("X-Done") === "1";
      }
    } catch (e) { /* the server may be restarting: try again */ }
    pre.dataset.loaded = "1";  // what the browser tests wait for
    if (done) {
      if (!wasDone && pre.dataset.reload === "1") setTimeout(() => window.location.reload(), 300);
      return;
    }
    setTimeout(step, got ? 200 : 1000);
  }
  step();
}

// Tabs: each button shows its pane (data-pane) and hides the others of its group.
function tabs(group) {
  const buttons = Array.from(group.querySelectorAll("button.tab"));
  for (const b of buttons) {
    b.addEventListener("click", () => {
      for (const o of buttons) {
        const on = o === b;
        o.classList.toggle("active", on);
        o.setAttribute("aria-selected", on ? "true" : "false");
        document.getElementById("pane-" + o.dataset.pane).hidden = !on;
      }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const pre of document.querySelectorAll("pre.log")) followLogs(pre);
  for (const group of document.querySelectorAll(".tabs")) tabs(group);
});
