// dsub's monitor page: one renderer for the live page (api/events: the
// state streamed every second, each message with only what the page
// lacks) and the report (its whole state embedded in the page).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const token = new URLSearchParams(location.search).get("token");
  let tl = { epoch: -1, lanes: [], ended: [], running: [], res_ms: 0, merged: 0 };
  let last = null; // the latest state
  let failedStreams = 0;

  function api(path) { return token ? path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : path; }

  function fmtDur(s) {
    if (s == null || s < 0 || !isFinite(s)) return "–";
    if (s < 1) return (s * 1000).toFixed(0) + " ms";
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    const m = Math.floor(s / 60), h = Math.floor(m / 60);
    if (h > 0) return h + "h" + String(m % 60).padStart(2, "0") + "m";
    return m + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  }
  function fmtBytes(n) {
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(n < 10 ? 1 : 0) : n) + " " + u[i];
  }
  // The command is shown shortened to its first 200 characters (2,000
  // ::: values would fill the page); a click shows it whole, and back.
  let commandWhole = false;
  function showCommand(cmd) {
    const e = $("command");
    const long = cmd.length > 200;
    text("command", long && !commandWhole ? cmd.slice(0, 200) + " \u2026 (" + cmd.length + " characters: click for all)" : cmd);
    e.title = long ? (commandWhole ? "click to shorten" : "click to show the whole command") : "";
    e.style.cursor = long ? "pointer" : "";
    e.onclick = long ? () => { commandWhole = !commandWhole; showCommand(cmd); } : null;
  }
  function text(id, v) { const e = $(id); if (e.textContent !== String(v)) e.textContent = v; }
  function el(tag, attrs, txt) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (txt != null) e.textContent = txt;
    return e;
  }
  function sel(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  function merge(t) {
    const ended = t.ended || [];
    if (t.full || t.epoch !== tl.epoch) { tl.ended = ended.slice(); tl.reset = true; }
    else tl.ended.push(...ended);
    // Lanes only grow: a message has those from lanes_from on.
    tl.lanes = (t.lanes_from ? tl.lanes.slice(0, t.lanes_from) : []).concat(t.lanes || []);
    tl.epoch = t.epoch; tl.running = t.running || []; tl.res_ms = t.res_ms; tl.merged = t.merged;
    tl.prep = t.prep || tl.prep || [];
  }

  function render(st) {
    // A stream's message leaves out failures and warnings that have not
    // changed: absent, they are the page's own.
    const first = !last;
    last = st;
    document.title = "dsub " + (st.id || "") + (st.done ? " (ended)" : "");
    text("run-id", st.id || "");
    const status = $("status");
    let s = st.live ? (st.done ? "ended" : "running") : (st.done ? "finished" : "in progress");
    if (st.done && (st.error || st.failed > 0)) s = st.error ? "stopped" : "finished with failures";
    text("status", s);
    status.className = "status" + (st.done ? (st.error || st.failed > 0 ? " failed" : " done") : "");
    showCommand(st.command || "");
    const jobs = Math.max(st.jobs, 1);
    const bar = $("progress").children;
    bar[0].style.width = (100 * st.succeeded / jobs) + "%";
    bar[1].style.width = (100 * st.failed / jobs) + "%";
    bar[2].style.width = (100 * st.running / jobs) + "%";
    text("jobs", st.jobs + (st.all_known ? "" : "+"));
    text("succeeded", st.succeeded);
    text("failed", st.failed);
    text("running", st.running + (st.queued ? " (+" + st.queued + " queued)" : ""));
    text("elapsed", fmtDur(st.elapsed_s));
    text("rate", st.rate > 0 ? st.rate.toFixed(st.rate < 10 ? 2 : 0) : "–");
    text("eta", st.done ? "–" : fmtDur(st.eta_s));
    text("speedup", st.speedup ? st.speedup.toFixed(2) + "×" : "–");
    const value = st.result || st.reduced;
    $("result-box").hidden = !value;
    if (value) {
      // A run that ended with failed jobs has no result: what its
      // successes reduce to is shown as that, never as the result.
      const partial = st.done ? "no result (" + st.failed + " failed); the successes reduce to" : "reduced so far";
      text("result-label", st.result ? "result" : partial);
      text("result", value);
    }
    $("error-box").hidden = !st.error;
    text("error-box", st.error || "");
    $("control").hidden = !(st.control && st.live && !st.done);
    const notes = $("notes"); notes.replaceChildren(...(st.notes || []).map((n) => el("li", {}, n)));
    renderHosts(st.hosts || []);
    renderTimeline(st);
    if (st.failures || first) renderFailures(st.failures || []);
    if (st.warnings || first) renderWarnings(st.warnings || []);
    if (st.histogram) renderHistogram(st.histogram);
    if (st.stragglers) renderStragglers(st.stragglers);
  }

  function renderHosts(hosts) {
    const body = $("hosts").tBodies[0];
    const rows = hosts.map((h) => {
      const tr = el("tr", { "data-host": h.name, class: "state-" + h.state, title: h.error || "" });
      const cells = [h.name, h.state, h.launcher || "", h.slots, h.running + (h.queued ? " (+" + h.queued + ")" : ""), h.done, h.failed, h.lost,
        h.done ? fmtDur(h.sec_per_job) : "–", h.cpu_eff >= 0 ? (100 * h.cpu_eff).toFixed(1) + "%" : "–",
        h.load >= 0 ? h.load.toFixed(2) : "–", h.mem_free >= 0 ? fmtBytes(h.mem_free) : "–"];
      cells.forEach((c, i) => tr.appendChild(el("td", i < 3 ? { class: "l" } : {}, c)));
      if (h.mem_total > 0) tr.lastChild.title = "of " + fmtBytes(h.mem_total);
      return tr;
    });
    body.replaceChildren(...rows);
  }

  const LANE_H = 14, LABEL_W = 90;
  // The timeline is drawn in place: bars are placed in milliseconds in a
  // group that one transform scales to the plot, so each second a live
  // page adds the new bars and redraws the running ones and the axis,
  // not every bar. It is drawn afresh when the bars were merged (a new
  // epoch), lanes were added, the width changed, or the scale shrank
  // twofold since (so that a short bar keeps a visible width).
  let drawn = null; // what the SVG holds: {epoch, lanes, width, scale, n, rowOf, bars, running, axis}
  function renderTimeline(st) {
    const svg = $("timeline");
    const lanes = tl.lanes || [];
    let end = Math.max(1, st.elapsed_s * 1000);
    if (!drawn || tl.reset) for (const s of tl.ended) end = Math.max(end, s.e);
    else for (let i = drawn.n; i < tl.ended.length; i++) end = Math.max(end, tl.ended[i].e);
    for (const s of tl.running) end = Math.max(end, s.e);
    if (drawn) end = Math.max(end, drawn.end);
    const width = Math.max(600, ($("timeline-box").clientWidth || 1000) - 2);
    const plot = width - LABEL_W - 8;
    const scale = plot / end; // px per ms
    const height = lanes.length * LANE_H + 20;
    if (!drawn || tl.reset || drawn.epoch !== tl.epoch || drawn.lanes !== lanes.length || drawn.width !== width || scale < drawn.scale / 2) {
      drawn = redraw(svg, lanes, width, plot, height, scale);
      tl.reset = false;
    }
    drawn.end = end;
    drawn.bars.setAttribute("transform", "translate(" + LABEL_W + ",0) scale(" + scale + ",1)");
    drawn.running.setAttribute("transform", drawn.bars.getAttribute("transform"));
    drawn.prep.setAttribute("transform", drawn.bars.getAttribute("transform"));
    const minW = 1 / drawn.scale; // 1 px when drawn
    const bar = (s) => sel("rect", { class: "seg k-" + s.k, x: s.s, y: drawn.rowOf[s.lane] * LANE_H + 1, width: Math.max(minW, s.e - s.s), height: LANE_H - 2, "data-id": s.id, "data-job": s.job, "data-kind": s.k });
    const frag = document.createDocumentFragment();
    for (; drawn.n < tl.ended.length; drawn.n++) frag.appendChild(bar(tl.ended[drawn.n]));
    drawn.bars.appendChild(frag);
    drawn.running.replaceChildren(...tl.running.map(bar));
    // Each host's preparing span, before its first job could start.
    drawn.prep.replaceChildren(...(tl.prep || []).map((s) => {
      const r = sel("rect", { class: "prep k-prep", x: s.s, y: drawn.rowOf[s.lane] * LANE_H + 1, width: Math.max(minW, s.e - s.s), height: LANE_H - 2 });
      const t = sel("title", {}); t.textContent = "preparing: connect, probe, ship, setup (" + fmtDur((s.e - s.s) / 1000) + ")";
      r.appendChild(t);
      return r;
    }));
    // The time axis: a tick every "nice" step.
    const axis = document.createDocumentFragment();
    const x = (t) => LABEL_W + t * scale;
    const step = niceStep(end / 8);
    for (let t = 0; t <= end; t += step) {
      const tx = sel("text", { class: "lane-label", x: x(t) + 2, y: height - 6 });
      tx.textContent = fmtDur(t / 1000);
      axis.appendChild(tx);
      axis.appendChild(sel("line", { x1: x(t), x2: x(t), y1: 0, y2: height - 16, stroke: "#d1d5db", "stroke-width": 0.5 }));
    }
    drawn.axis.replaceChildren(axis);
    const n = tl.ended.reduce((a, s) => a + s.n, 0);
    text("tl-note", tl.merged ? "(" + n + " executions; " + tl.merged + " drawn merged, bars closer than " + fmtDur(tl.res_ms / 1000) + " joined)" : "");
    svg.dataset.running = tl.running.length;
    svg.dataset.ended = tl.ended.length;
  }
  // redraw starts the SVG over: the lanes (rows in host order, then slot:
  // lanes are made as jobs need them) and empty groups for the bars.
  function redraw(svg, lanes, width, plot, height, scale) {
    const rows = lanes.map((l, i) => i).sort((a, b) => lanes[a].host.localeCompare(lanes[b].host, undefined, { numeric: true }) || lanes[a].slot - lanes[b].slot);
    const rowOf = new Array(lanes.length);
    rows.forEach((lane, row) => { rowOf[lane] = row; });
    svg.setAttribute("width", width); svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    const frag = document.createDocumentFragment();
    rows.forEach((lane, i) => {
      const l = lanes[lane];
      frag.appendChild(sel("rect", { class: "lane" + (i % 2 ? " odd" : ""), x: LABEL_W, y: i * LANE_H, width: plot, height: LANE_H }));
      const t = sel("text", { class: "lane-label", x: 4, y: i * LANE_H + LANE_H - 3 });
      t.textContent = l.host + " #" + l.slot;
      frag.appendChild(t);
    });
    const axis = sel("g", {}), prep = sel("g", {}), bars = sel("g", {}), running = sel("g", {});
    frag.append(axis, prep, bars, running);
    svg.replaceChildren(frag);
    return { epoch: tl.epoch, lanes: lanes.length, width, scale, n: 0, end: 0, rowOf, bars, running, axis, prep };
  }
  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1))));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }
  function segOf(target) {
    if (!target.classList || !target.classList.contains("seg")) return null;
    const id = Number(target.dataset.id);
    return tl.running.find((s) => s.id === id) || tl.ended.find((s) => s.id === id);
  }
  function describe(s) {
    const lane = tl.lanes[s.lane] || {};
    const lines = [];
    lines.push(s.n > 1 ? s.n + " executions (merged)" + (s.f ? ", " + s.f + " failed" : "") : "job " + s.job + (s.k === "run" ? " (running)" : ""));
    lines.push("host " + lane.host + " slot " + lane.slot);
    lines.push("from " + fmtDur(s.s / 1000) + " for " + fmtDur((s.e - s.s) / 1000));
    if (s.n === 1 && s.k !== "run" && s.k !== "ok") lines.push("exit " + s.x + " (" + s.k + ")");
    if (s.cmd) lines.push("$ " + s.cmd);
    if (s.log) lines.push("log: " + s.log);
    if (s.tail) lines.push("stderr:\n" + s.tail);
    return lines.join("\n");
  }
  $("timeline").addEventListener("mousemove", (ev) => {
    const s = segOf(ev.target), tip = $("tip");
    if (!s) { tip.hidden = true; return; }
    tip.textContent = describe(s);
    tip.style.left = Math.min(ev.clientX + 12, innerWidth - 490) + "px";
    tip.style.top = (ev.clientY + 12) + "px";
    tip.hidden = false;
  });
  $("timeline").addEventListener("mouseleave", () => { $("tip").hidden = true; });
  let picked = null; // the job whose detail is shown
  $("timeline").addEventListener("click", (ev) => {
    const s = segOf(ev.target);
    $("detail-box").hidden = !s;
    picked = s ? s.job : null;
    if (!s) return;
    $("detail").textContent = describe(s);
    // Only a running job can be cancelled, and only with --ui-control.
    $("cancel-job").hidden = !(last && last.control && last.live && !last.done && s.k === "run");
    $("cancel-job").textContent = "Cancel job " + s.job;
  });
  $("cancel-job").addEventListener("click", async () => {
    if (picked == null || !confirm("Cancel job " + picked + "? It is killed and counts as failed; the run goes on.")) return;
    const r = await fetch(api("api/cancel?job=" + picked), { method: "POST", headers: { "X-Dsub-Control": "1" } });
    $("cancel-job").hidden = true;
    if (!r.ok) $("detail").textContent += "\ncancel: " + (await r.text());
  });

  function renderFailures(fs) {
    const box = $("failures");
    if (!fs.length) { box.replaceChildren(el("p", { class: "hint" }, "none")); return; }
    box.replaceChildren(...fs.slice().reverse().map((f) => {
      const lane = tl.lanes[f.lane] || {};
      const d = el("div", { class: "failure", "data-job": f.job });
      d.appendChild(el("div", {}, "job " + f.job + " on " + (lane.host || "?") + ": exit " + f.x + " after " + fmtDur((f.e - f.s) / 1000)));
      if (f.cmd) d.appendChild(el("code", {}, f.cmd));
      if (f.tail) d.appendChild(el("pre", {}, f.tail));
      if (f.log) d.appendChild(el("div", { class: "hint" }, "log: " + f.log));
      return d;
    }));
  }
  function renderWarnings(ws) {
    $("warn-section").hidden = !ws.length;
    $("warnings").replaceChildren(...ws.map((w) => el("li", {}, w)));
  }
  function renderHistogram(bins) {
    $("hist-section").hidden = !bins.length;
    // A count axis on the left (0, half and the top count, in jobs), the
    // durations along the bottom.
    const svg = $("histogram"), W = 640, H = 160, pad = 24, left = 44;
    svg.setAttribute("width", W + left); svg.setAttribute("height", H + pad + 8);
    const top = Math.max(1, ...bins.map((b) => b.n)), bw = (W - 10) / bins.length;
    const frag = document.createDocumentFragment();
    const y0 = 8; // room for the top label
    frag.appendChild(sel("line", { class: "axis", x1: left - 2, y1: y0, x2: left - 2, y2: y0 + H }));
    [0, Math.round(top / 2), top].forEach((n) => {
      const y = y0 + H - (H * n) / top;
      const l = sel("text", { class: "count", x: left - 6, y: y + 3, "text-anchor": "end" });
      l.textContent = n + (n === top ? " jobs" : "");
      frag.appendChild(l);
      frag.appendChild(sel("line", { class: "tick", x1: left - 5, y1: y, x2: left - 2, y2: y }));
    });
    bins.forEach((b, i) => {
      const h = (H * b.n) / top;
      const r = sel("rect", { x: left + 5 + i * bw, y: y0 + H - h, width: Math.max(1, bw - 2), height: h, "data-n": b.n });
      const t = sel("title", {}); t.textContent = b.n + " jobs of " + fmtDur(b.lo) + " to " + fmtDur(b.hi);
      r.appendChild(t); frag.appendChild(r);
      if (i % Math.ceil(bins.length / 8) === 0) {
        const l = sel("text", { x: left + 5 + i * bw, y: y0 + H + 14 }); l.textContent = fmtDur(b.lo); frag.appendChild(l);
      }
    });
    svg.replaceChildren(frag);
  }
  function renderStragglers(ss) {
    $("strag-section").hidden = !ss.length;
    $("stragglers").tBodies[0].replaceChildren(...ss.map((s) => {
      const tr = el("tr", { "data-job": s.job });
      [s.job, (tl.lanes[s.lane] || {}).host, fmtDur((s.e - s.s) / 1000), s.cmd || ""].forEach((c, i) => tr.appendChild(el("td", i === 3 || i === 1 ? { class: "l" } : {}, c)));
      return tr;
    }));
  }

  $("stop").addEventListener("click", () => {
    if (!confirm("Stop the run? Running jobs are killed; the run can be resumed.")) return;
    fetch(api("api/stop"), { method: "POST", headers: { "X-Dsub-Control": "1" } });
  });

  // stream follows the run: the browser reconnects by itself (sending the
  // last message's id, so that only what is missing comes again) until
  // the run has ended.
  function stream() {
    const es = new EventSource(api("api/events"));
    es.onmessage = (ev) => {
      const st = JSON.parse(ev.data);
      failedStreams = 0;
      merge(st.timeline);
      render(st);
      document.body.dataset.ready = "1";
      if (st.done) es.close();
    };
    es.onerror = () => {
      if (last && last.done) { es.close(); text("status", "ended; dsub has exited"); return; }
      if (++failedStreams > 2) text("status", "no answer from dsub (retrying)");
    };
  }

  const embedded = JSON.parse($("data").textContent || "null");
  if (embedded) {
    merge(embedded.timeline);
    render(embedded);
    document.body.dataset.ready = "1";
    document.body.dataset.renderMs = performance.now().toFixed(0);
  } else {
    stream();
  }
  addEventListener("resize", () => { if (last) renderTimeline(last); }); // a new width: drawn afresh
})();
