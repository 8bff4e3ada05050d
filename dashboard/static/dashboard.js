// SCB dashboard: polls the hub's read-only JSON endpoints and draws the page. No framework, no build step, no
// external resources (the hub may be offline in the field). Helpers (el, getJSON, ether, ...) are common.js's.
// Everything from the server is inserted with textContent / attributes, never as HTML.
"use strict";

const state = {refreshS: 5, bucket: null, holder: "", shares: {}, parties: [], verifying: false, timer: null};

// ------------------------------------------------------------------------------------------------ the chart

function drawChart(series) {
  const chart = document.getElementById("chart");
  chart.replaceChildren();
  const W = 960, H = 320, L = 64, R = 16, T = 16, B = 40;
  const holder = state.holder;
  const parties = holder ? [holder] : series.parties;
  const points = series.points;
  chart.setAttribute("data-points", String(points.length));
  const note = document.getElementById("energy-note");
  if (!points.length) {
    chart.append(svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty"}, "no readings yet"));
    note.textContent = "";
    renderLegend([], holder, false);
    return;
  }
  const share = holder ? state.shares[holder] : null;
  const shareKnown = share !== undefined && share !== null;
  const gen = (p) => holder && shareKnown ? p.generation_wh * share / 10000 : p.generation_wh;
  const used = (p) => parties.reduce((s, party) => s + (p.consumption_wh[party] || 0), 0);
  const maxY = Math.max(1, ...points.map(gen), ...points.map(used)) * 1.08;
  const step = niceStep(maxY, 5), top = Math.ceil(maxY / step) * step;
  const x0 = points[0].start_ms, x1 = points[points.length - 1].end_ms;
  const xs = (ms) => L + (ms - x0) / Math.max(1, x1 - x0) * (W - L - R);
  const ys = (wh) => H - B - wh / top * (H - T - B);
  const unit = top >= 5000 ? 1000 : 1, unitName = unit === 1000 ? "kWh" : "Wh";

  const grid = svg("g", {class: "grid"});
  for (let v = 0; v <= top + 1e-9; v += step) {
    grid.append(svg("line", {x1: L, x2: W - R, y1: ys(v), y2: ys(v)}));
    const label = unit === 1 ? String(Math.round(v)) : (v / unit).toFixed(step / unit < 1 ? 1 : 0);
    grid.append(svg("text", {x: L - 6, y: ys(v) + 4, "text-anchor": "end"}, label));
  }
  grid.append(svg("text", {x: 12, y: T + (H - T - B) / 2, transform: `rotate(-90 12 ${T + (H - T - B) / 2})`,
                           "text-anchor": "middle"}, `${unitName} per ${series.bucket === "hour" ? "hour" : "window"}`));
  const labels = Math.min(6, points.length);
  for (let i = 0; i < labels; i++) {
    const p = points[Math.round(i * (points.length - 1) / Math.max(1, labels - 1))];
    const x = xs(p.start_ms + series.bucket_ms / 2);
    grid.append(svg("text", {x, y: H - B + 16, "text-anchor": "middle"}, p.start.slice(11, 16)));
    if (i === 0 || p.start.slice(0, 10) !== points[0].start.slice(0, 10))
      grid.append(svg("text", {x, y: H - B + 30, "text-anchor": "middle", class: "date"}, p.start.slice(0, 10)));
  }
  chart.append(grid);

  const bars = svg("g", {class: "bars"});
  const bw = Math.max(1, (xs(x0 + series.bucket_ms) - xs(x0)) * 0.78);
  for (const p of points) {
    let base = 0;
    const x = xs(p.start_ms) + (xs(x0 + series.bucket_ms) - xs(x0) - bw) / 2;
    parties.forEach((party) => {
      const wh = p.consumption_wh[party] || 0;
      if (wh <= 0) return;
      const color = COLORS[series.parties.indexOf(party) % COLORS.length];
      const rect = svg("rect", {x, y: ys(base + wh), width: bw, height: Math.max(0.5, ys(base) - ys(base + wh)),
                                fill: color, class: "bar" + (p.open ? " open" : ""), "data-party": party});
      rect.append(svg("title", {}, `${party}: ${energy(wh)} consumed, ${when(p.start)}`));
      bars.append(rect);
      base += wh;
    });
  }
  chart.append(bars);

  const line = svg("g", {class: "generation"});
  const coords = points.map((p) => [xs(p.start_ms + series.bucket_ms / 2), ys(gen(p))]);
  line.append(svg("polyline", {points: coords.map((c) => c.join(",")).join(" ")}));
  points.forEach((p, i) => {
    const dot = svg("circle", {cx: coords[i][0], cy: coords[i][1], r: 3, class: "gen-point" + (p.open ? " open" : ""),
                               "data-wh": String(gen(p))});
    dot.append(svg("title", {}, `generation${holder && shareKnown ? " (" + holder + "'s share)" : ""}: ${energy(Math.round(gen(p)))}, ${when(p.start)}`));
    line.append(dot);
  });
  chart.append(line);

  const total = points.reduce((s, p) => s + gen(p), 0), consumed = points.reduce((s, p) => s + used(p), 0);
  note.textContent = `${points.length} ${series.bucket === "hour" ? "hours" : "publish windows"} up to ${when(series.newest)}: ` +
    `generation ${energy(Math.round(total))}${holder && shareKnown ? " (" + holder + "'s share, " + share / 100 + " %)" : ""}, ` +
    `consumption ${energy(consumed)}. The newest point is still filling.`;
  renderLegend(series.parties, holder, shareKnown);
}

function renderLegend(parties, holder, shareKnown) {
  const legend = document.getElementById("legend");
  legend.replaceChildren(el("span", {class: "key gen"},
    holder && shareKnown ? `generation (${holder}'s share)` : holder ? "generation (all; share unknown)" : "generation"));
  parties.forEach((party, i) => {
    if (holder && party !== holder) return;
    const swatch = svg("svg", {class: "swatch", width: 12, height: 12, viewBox: "0 0 12 12"});
    swatch.append(svg("rect", {width: 12, height: 12, fill: COLORS[i % COLORS.length]}));
    legend.append(el("span", {class: "key"}, swatch, `${party} consumption`));
  });
}

function updateHolderOptions(parties) {
  const select = document.getElementById("holder");
  const known = Array.from(select.options).map((o) => o.value).filter((v) => v);
  if (known.join() === parties.join()) return;
  select.replaceChildren(el("option", {value: "", text: "all (stacked)"}));
  for (const p of parties) select.append(el("option", {value: p, text: p}));
  select.value = parties.includes(state.holder) ? state.holder : "";
}

// ------------------------------------------------------------------------------------------------ tables

function renderStatus(s) {
  state.refreshS = s.dashboard.refresh_s;
  if (state.bucket === null) {
    state.bucket = s.dashboard.chart_bucket;
    document.getElementById("bucket").value = state.bucket;
  }
  document.getElementById("hub-id").textContent = s.hub;
  const st = s.status, out = st.outbox.by_state || {};
  const parts = [`community time ${when(s.community_now)}`, `${st.readings.count} readings`,
    `outbox: ${Object.entries(out).map(([k, v]) => `${v} ${k}`).join(", ") || "empty"}`];
  if (st.settlement && st.settlement.last_period)
    parts.push(`last period ${st.settlement.last_period.period_id} ${st.settlement.last_period.state}`);
  if (st.settlement && st.settlement.hub_account)  // the low-balance alert, if any, is in the alerts below
    parts.push(`hub account ${st.settlement.hub_account.balance_eth} ether`);
  const procs = st.processes || [];
  if (procs.length) {
    const unwell = procs.filter((p) => !p.running || ["failing", "hung", "restarting"].includes(p.state))
      .map((p) => `${p.name} ${p.running ? p.state : "stopped"}`);
    parts.push(unwell.length ? `processes: ${unwell.join(", ")}` : `${procs.length} processes running`);
  }
  document.getElementById("summary").textContent = parts.join(" · ");
  problem(st.settlement && st.settlement.last_error ? `settlement is retrying after: ${st.settlement.last_error}` : "");
  renderAlerts(st.alerts || []);
}

function renderAlerts(alerts) {
  // the same alerts as `scb status`: what is wrong and where to look
  const list = document.getElementById("alerts");
  list.hidden = !alerts.length;
  list.replaceChildren(...alerts.map((a) => el("li", {"data-code": a.code},
    el("span", {class: "code", text: a.code}), el("span", {text: a.message}),
    a.since ? el("span", {class: "muted", text: ` (since ${when(a.since)})`}) : "")));
}

function renderHolders(h) {
  const source = document.getElementById("holders-source");
  if (h.source === "chain") source.textContent = `From the chain (eth_call) at block ${h.block}, block time ${when(h.block_time)}.`;
  else if (h.source === "cache") source.textContent = `The chain cannot be read (${h.error}); showing the values read at block ${h.block} (${when(h.read_at)}).`;
  else if (h.source === "stored") source.textContent = `The chain cannot be read (${h.error}); showing the standing stored with each holder's last supply decision.`;
  else source.textContent = h.error || "";
  source.className = h.source === "chain" ? "muted" : "warn";
  state.shares = {};
  const rows = h.holders.map((x) => {
    if (x.share_bps !== null && x.share_bps !== undefined) state.shares[x.party] = x.share_bps;
    const standing = x.in_good_standing === true ? "good" : x.in_good_standing === false ? "out of good standing" : "–";
    const equity = x.equity_paid_wei != null && x.holding_value_wei != null
      ? `${ether(x.equity_paid_wei)} of ${ether(x.holding_value_wei)}` : "–";
    const d = x.decision;
    const supply = d ? el("span", {class: `decision ${d.decision}`, title: d.reason, text: d.decision.toUpperCase()}) : "–";
    return el("tr", {"data-party": x.party},
      el("td", {}, el("a", {href: `/holder/${encodeURIComponent(x.party)}`, title: `${x.party}'s own page`, text: x.party})),
      el("td", {class: "mono", title: x.account, text: short(x.account, 8)}),
      el("td", {text: x.status || "–"}), el("td", {class: standing === "good" ? "ok" : standing === "–" ? "" : "bad", text: standing}),
      el("td", {text: x.share_bps != null ? `${x.share_bps / 100} %` : "–"}), el("td", {class: "equity", text: equity}),
      el("td", {class: "debt", text: ether(x.debt_wei)}), el("td", {text: ether(x.prepaid_wei)}),
      el("td", {text: when(x.next_due)}), el("td", {}, supply));
  });
  fill(document.querySelector("#holders tbody"), rows, "no holders yet (the settlement has not registered a system)", 10);
}

function renderMessages(list) {
  const rows = list.messages.map((m) => {
    const v = m.verification;
    const button = m.address
      ? el("button", {type: "button", class: "verify", "data-address": m.address, text: "verify"}) : "";
    const verdict = v ? el("span", {class: `verdict ${v.verdict === "VALID" ? "ok" : v.verdict === "INVALID" ? "bad" : "warn"}`,
                                    title: v.reason || "", text: v.verdict}) : "";
    return el("tr", {"data-id": String(m.id)},
      el("td", {text: String(m.id)}), el("td", {text: m.state}), el("td", {text: String(m.readings)}),
      el("td", {text: m.first_reading ? `${when(m.first_reading)} – ${when(m.last_reading).slice(11)}` : "–"}),
      el("td", {class: "mono", title: m.address || "", text: short(m.address, 12)}),
      el("td", {text: m.settled ? `yes (period ${m.periods.join(", ")})` : m.periods.length ? `period ${m.periods.join(", ")} pending` : "not yet"}),
      el("td", {}, button, " ", verdict));
  });
  fill(document.querySelector("#messages tbody"), rows, "no messages yet", 7);
}

function renderSettlements(s) {
  document.getElementById("system").textContent = s.system
    ? `System ${s.system.system_id} on SolarProperty ${s.system.contract} (chain ${s.system.chain_id}).` : "No system yet.";
  const rows = s.periods.map((p) => {
    const consumption = (p.consumption || []).map((c) => `${c.party} ${energy(c.wh)}`).join(", ");
    return el("tr", {"data-period": String(p.period_id)},
      el("td", {text: String(p.period_id)}), el("td", {text: `${when(p.start)} – ${when(p.end).slice(11)}`}),
      el("td", {class: p.state === "settled" ? "ok" : p.error ? "bad" : "", title: p.error || "", text: p.state}),
      el("td", {text: String(p.readings) + (p.late ? ` (${p.late} late)` : "")}),
      el("td", {text: energy(p.generation_wh)}), el("td", {text: consumption || "–"}),
      el("td", {class: "mono tx", title: p.tx || "", text: short(p.tx, 10)}), el("td", {text: p.block ?? "–"}));
  });
  fill(document.querySelector("#settlements tbody"), rows, "no settlement yet", 8);
}

function renderDecisions(list) {
  const rows = list.decisions.map((d) => el("tr", {},
    el("td", {text: when(d.community_time || d.decided_at)}), el("td", {text: d.party}),
    el("td", {}, el("span", {class: `decision ${d.decision}`, text: d.decision.toUpperCase()})),
    el("td", {text: d.status}), el("td", {class: "reason", text: d.reason}),
    el("td", {class: d.applied ? "ok" : "bad", title: d.apply_error || "", text: d.applied ? "yes" : "not yet"})));
  fill(document.querySelector("#decisions tbody"), rows, "no supply decision yet", 6);
}

// ------------------------------------------------------------------------------------------------ verification

async function verify(address) {
  if (state.verifying) return;
  state.verifying = true;
  const verdict = document.getElementById("verify-verdict"), steps = document.getElementById("verify-steps");
  document.getElementById("verify-subject").textContent = `verifying ${address} …  (scb verify ${address})`;
  verdict.textContent = "…";
  verdict.className = "verdict";
  document.getElementById("verify-reason").textContent = "";
  steps.replaceChildren();
  document.getElementById("verify-section").scrollIntoView({block: "nearest"});
  try {
    const r = await getJSON(`/api/verify?address=${encodeURIComponent(address)}`);
    document.getElementById("verify-subject").textContent = `${r.subject} — scb verify ${address}`;
    verdict.textContent = r.verdict;
    verdict.className = `verdict ${r.verdict === "VALID" ? "ok" : r.verdict === "INVALID" ? "bad" : "warn"}`;
    document.getElementById("verify-reason").textContent = r.reason || "";
    // the message's own steps in full; the per-reading steps ("h1#17 proof", ...) folded, open when one failed
    const step = (s) => el("li", {class: s.ok === true ? "ok" : s.ok === false ? "bad" : "muted"},
      el("span", {class: "mark", text: s.ok === true ? "ok" : s.ok === false ? "FAIL" : "--"}), " ",
      el("strong", {text: s.step}), `: ${s.detail}`);
    const perReading = r.steps.filter((s) => s.step.includes("#"));
    for (const s of r.steps) if (!s.step.includes("#")) steps.append(step(s));
    if (perReading.length) {
      const readings = new Set(perReading.map((x) => x.step.split(" ")[0])).size;
      const failed = perReading.filter((x) => x.ok === false).length;
      const folded = el("details", {class: "readings"}, el("summary", {class: failed ? "bad" : "ok",
        text: `${readings} reading${readings === 1 ? "" : "s"}: leaf, period, Merkle proof and verifyReading — ` +
              `${perReading.length} steps, ${failed ? failed + " failed" : "all ok"}`}),
        el("ol", {class: "per-reading"}, ...perReading.map(step)));
      folded.open = failed > 0;
      steps.append(el("li", {class: "group"}, folded));
    }
  } catch (e) {
    verdict.textContent = "ERROR";
    verdict.className = "verdict bad";
    document.getElementById("verify-reason").textContent = e.message;
  } finally {
    state.verifying = false;
  }
  refreshMessages();
}

// ------------------------------------------------------------------------------------------------ polling

async function refreshMessages() {
  try { renderMessages(await getJSON("/api/messages?limit=15")); } catch (e) { problem(e.message); }
}

async function refresh() {
  clearTimeout(state.timer);
  try {
    renderStatus(await getJSON("/api/status"));
    const [energySeries, holders, messages, periods, decisions] = await Promise.all([
      getJSON(`/api/energy?bucket=${state.bucket}`), getJSON("/api/holders"), getJSON("/api/messages?limit=15"),
      getJSON("/api/settlements?limit=12"), getJSON("/api/decisions?limit=12")]);
    renderHolders(holders);
    state.parties = energySeries.parties;
    updateHolderOptions(energySeries.parties);
    drawChart(energySeries);
    renderMessages(messages);
    renderSettlements(periods);
    renderDecisions(decisions);
    document.body.setAttribute("data-loaded", "yes");
  } catch (e) {
    problem(`the dashboard cannot reach the hub: ${e.message}`);
  }
  state.timer = setTimeout(refresh, state.refreshS * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("bucket").addEventListener("change", (e) => { state.bucket = e.target.value; refresh(); });
  document.getElementById("holder").addEventListener("change", (e) => { state.holder = e.target.value; refresh(); });
  document.getElementById("messages").addEventListener("click", (e) => {
    const button = e.target.closest("button.verify");
    if (button) verify(button.getAttribute("data-address"));
  });
  refresh();
  const asked = new URLSearchParams(window.location.search).get("verify");
  if (asked) verify(asked);
});
