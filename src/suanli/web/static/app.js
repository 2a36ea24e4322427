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
      if (!wasDone && pre.dataset.reload === "1") setTimeout(reloadKeepingFocus, 300);
      return;
    }
    setTimeout(step, got ? 200 : 1000);
  }
  step();
}

// A chart's figures as a table (the chart's text alternative; `id` is a <details> holding an
// empty <table>): a header row and the rows, as text. An open table stays open when refreshed.
function fillTable(id, head, rows) {
  const box = document.getElementById(id);
  if (!box) return;
  const table = box.querySelector("table");
  const tr = (cells, tag) => {
    const row = document.createElement("tr");
    for (const c of cells) {
      const cell = document.createElement(tag);
      if (tag === "th") cell.scope = "col";
      cell.textContent = c == null ? "-" : String(c);
      row.append(cell);
    }
    return row;
  };
  table.tHead.replaceChildren(tr(head, "th"));
  if (!rows.length) {  // nothing yet: say so, in one cell across the table
    const none = tr([box.dataset.none || "-"], "td");
    none.firstChild.colSpan = head.length;
    rows = [none];
    table.tBodies[0].replaceChildren(none);
    box.dataset.rows = "0";
    return;
  }
  table.tBodies[0].replaceChildren(...rows.map((r) => tr(r, "td")));
  box.dataset.rows = String(rows.length);  // what the browser tests read
}
window.suanliTable = fillTable;

// Charts readable by everyone: ECharts' own aria description and decal patterns (colour is
// never the only cue) and colours of at least 3:1 against the chart's background.
const PALETTE = ["#0b6bcb", "#b45309", "#15803d", "#7c3aed", "#be123c", "#0e7490"];
const PALETTE_DARK = ["#6cb6ff", "#f5a623", "#4ade80", "#c4b5fd", "#fb7185", "#67e8f9"];
window.suanliChartBase = (dark) => ({
  color: dark ? PALETTE_DARK : PALETTE,
  aria: { enabled: true, decal: { show: true } },
});
window.suanliChartLocale = () => (document.documentElement.lang === "en" ? "EN" : "ZH");

// Reload the page (a job that ended shows its final state) and put the keyboard focus back on
// the element that had it (by its id), so a keyboard or screen-reader user keeps their place.
const FOCUS_KEY = "suanli-focus:" + location.pathname;
function reloadKeepingFocus() {
  const el = document.activeElement;
  if (el && el.id && el !== document.body) sessionStorage.setItem(FOCUS_KEY, el.id);
  window.location.reload();
}
function restoreFocus() {
  const id = sessionStorage.getItem(FOCUS_KEY);
  sessionStorage.removeItem(FOCUS_KEY);
  const el = id && document.getElementById(id);
  if (el) el.focus();
}

// Tabs (WAI-ARIA tabs pattern): each button shows its pane (data-pane) and hides the others of
// its group; the arrow keys, Home and End move between the tabs.
function tabs(group) {
  const buttons = Array.from(group.querySelectorAll("button.tab"));
  function select(b, focus) {
    for (const o of buttons) {
      const on = o === b;
      o.classList.toggle("active", on);
      o.setAttribute("aria-selected", on ? "true" : "false");
      o.tabIndex = on ? 0 : -1;
      document.getElementById("pane-" + o.dataset.pane).hidden = !on;
    }
    if (focus) b.focus();
  }
  buttons.forEach((b, i) => {
    b.addEventListener("click", () => select(b, false));
    b.addEventListener("keydown", (e) => {
      const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: buttons.length - 1 }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      select(buttons[(to + buttons.length) % buttons.length], true);
    });
  });
}

// Live regions htmx replaces (the job list every 3 s) keep the keyboard focus: htmx focuses
// again the element with the focused element's id in the new content, so rows and their links
// carry stable ids (_job_rows.html).

// A form the server sent back with an error: the error is announced (role=alert) and the focus
// moves to the first field marked invalid (else to the error itself).
function focusFormError() {
  const field = document.querySelector("[aria-invalid=true]");
  const error = document.querySelector(".error[role=alert]");
  if (field) field.focus(); else if (error) error.focus();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const pre of document.querySelectorAll("pre.log")) followLogs(pre);
  for (const group of document.querySelectorAll(".tabs")) tabs(group);
  focusFormError();
  restoreFocus();
});
