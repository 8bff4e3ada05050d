// A household's own page (/holder/<party>): its standing, consumption, bills with the readings behind them and
// their proofs, payments and deposits. Helpers (el, getJSON, ether, ...) are common.js's. Everything from the
// server is inserted with textContent / attributes, never as HTML.
"use strict";

const page = {party: decodeURIComponent(window.location.pathname.split("/").pop() || ""), refreshS: 5, timer: null,
              open: null, share: null};
const EVENT_NAMES = {Paid: "payment", Deposited: "deposit", DepositWithdrawn: "deposit withdrawn",
                     Repossessed: "share repossessed", ShareOwned: "share owned outright"};

function csvLink(kind) {
  return `/api/export/${kind}.csv?holder=${encodeURIComponent(page.party)}`;
}

function renderStanding(h) {
  document.getElementById("account").textContent =
    `${h.account} · system ${h.system.system_id} on ${h.system.contract} (chain ${h.system.chain_id})`;
  const source = document.getElementById("standing-source");
  source.textContent = h.standing_source === "chain" ? `From the chain at block time ${when(h.block_time)}.`
    : h.standing_error ? `The chain cannot be read (${h.standing_error}); showing the last known standing.` : "";
  source.className = h.standing_source === "chain" ? "muted" : "warn";
  const s = h.standing || {};
  page.share = s.share_bps ?? null;
  document.getElementById("status").textContent = s.status || "–";
  const good = document.getElementById("good");
  good.textContent = s.in_good_standing === true ? "yes" : s.in_good_standing === false ? "no: a bill is past due" : "–";
  good.className = s.in_good_standing === true ? "ok" : s.in_good_standing === false ? "bad" : "";
  const d = s.decision;
  document.getElementById("supply").replaceChildren(d
    ? el("span", {class: `decision ${d.decision}`, title: d.reason, text: d.decision.toUpperCase()}) : "–");
  if (d) document.getElementById("supply").append(" ", el("span", {class: "muted reason", text: d.reason}));
  document.getElementById("share").textContent = s.share_bps != null ? `${s.share_bps / 100} %` : "–";
  document.getElementById("debt").textContent = ether(s.debt_wei);
  document.getElementById("deposit").textContent = ether(s.prepaid_wei);
  document.getElementById("next-due").textContent = when(s.next_due);
  const bar = document.getElementById("equity");
  if (s.equity_paid_wei != null && s.holding_value_wei != null && BigInt(s.holding_value_wei) > 0n) {
    const bps = Number(BigInt(s.equity_paid_wei) * 10000n / BigInt(s.holding_value_wei));
    bar.value = bps;
    document.getElementById("equity-text").textContent =
      `equity paid: ${ether(s.equity_paid_wei)} of ${ether(s.holding_value_wei)} (${(bps / 100).toFixed(2)} %)`;
  } else {
    bar.value = 0;
    document.getElementById("equity-text").textContent = s.status === "repossessed"
      ? "equity paid: – (the share was repossessed)" : "equity paid: –";
  }
}

function renderBills(h) {
  const note = document.getElementById("bills-note");
  note.classList.toggle("warn", !!h.ledger_error);
  if (h.ledger_error) note.textContent = `The chain cannot be read (${h.ledger_error}): the amounts are missing.`;
  const rows = h.bills.map((b) => {
    const button = el("button", {type: "button", class: "readings", "data-period": String(b.period_id),
                                 "aria-controls": "readings-panel",
                                 "aria-expanded": page.open === b.period_id ? "true" : "false",
                                 text: `${b.readings} readings`});
    return el("tr", {"data-period": String(b.period_id)},
      el("td", {text: String(b.period_id)}), el("td", {text: `${when(b.start)} – ${when(b.end).slice(11)}`}),
      el("td", {text: energy(b.consumption_wh)}), el("td", {class: "amount", text: b.amount_wei === "" ? "–" : ether(String(b.amount_wei))}),
      el("td", {text: b.from_deposit_wei === "" ? "–" : ether(String(b.from_deposit_wei))}),
      el("td", {class: b.unpaid_wei && String(b.unpaid_wei) !== "0" ? "warn" : "", text: b.unpaid_wei === "" ? "–" : ether(String(b.unpaid_wei))}),
      el("td", {text: when(b.due)}), el("td", {}, button));
  });
  fill(document.querySelector("#bills tbody"), rows, "no settled period yet", 8);
}

function describeArgs(args) {
  return Object.entries(args).map(([k, v]) => k.endsWith("Bps") ? `${k} ${Number(v) / 100} %` : `${k} ${ether(String(v))}`)
    .join(", ");
}

function renderPayments(h) {
  document.getElementById("payments-note").textContent = h.ledger_read_at
    ? `The contract's events, read ${when(h.ledger_read_at)} (wall clock).` : "";
  const rows = h.payments.map((p) => el("tr", {"data-event": p.event},
    el("td", {text: when(p.time)}), el("td", {text: EVENT_NAMES[p.event] || p.event}),
    el("td", {text: describeArgs(p.args)}), el("td", {class: "mono", title: p.tx, text: short(p.tx, 10)}),
    el("td", {text: String(p.block)})));
  fill(document.querySelector("#payments tbody"), rows, "no payment or deposit yet", 5);
}

function drawConsumption(series) {
  const chart = document.getElementById("chart");
  chart.replaceChildren();
  const W = 960, H = 300, L = 64, R = 16, T = 16, B = 40;
  const points = series.points;
  chart.setAttribute("data-points", String(points.length));
  if (!points.length) {
    chart.append(svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty"}, "no readings yet"));
    return;
  }
  const used = (p) => p.consumption_wh[page.party] || 0;
  const gen = (p) => page.share != null ? p.generation_wh * page.share / 10000 : null;
  const maxY = Math.max(1, ...points.map(used), ...points.map((p) => gen(p) || 0)) * 1.08;
  const step = niceStep(maxY, 5), top = Math.ceil(maxY / step) * step;
  const x0 = points[0].start_ms, x1 = points[points.length - 1].end_ms;
  const xs = (ms) => L + (ms - x0) / Math.max(1, x1 - x0) * (W - L - R);
  const ys = (wh) => H - B - wh / top * (H - T - B);
  const grid = svg("g", {class: "grid"});
  for (let v = 0; v <= top + 1e-9; v += step) {
    grid.append(svg("line", {x1: L, x2: W - R, y1: ys(v), y2: ys(v)}));
    grid.append(svg("text", {x: L - 6, y: ys(v) + 4, "text-anchor": "end"}, String(Math.round(v))));
  }
  grid.append(svg("text", {x: 12, y: T + (H - T - B) / 2, transform: `rotate(-90 12 ${T + (H - T - B) / 2})`,
                           "text-anchor": "middle"}, "Wh per window"));
  for (let i = 0; i < Math.min(6, points.length); i++) {
    const p = points[Math.round(i * (points.length - 1) / Math.max(1, Math.min(6, points.length) - 1))];
    grid.append(svg("text", {x: xs(p.start_ms + series.bucket_ms / 2), y: H - B + 16, "text-anchor": "middle"},
                    p.start.slice(11, 16)));
  }
  chart.append(grid);
  const bars = svg("g", {class: "bars"});
  const bw = Math.max(1, (xs(x0 + series.bucket_ms) - xs(x0)) * 0.78);
  for (const p of points) {
    const wh = used(p);
    const rect = svg("rect", {x: xs(p.start_ms) + (xs(x0 + series.bucket_ms) - xs(x0) - bw) / 2, y: ys(wh), width: bw,
                              height: Math.max(0.5, ys(0) - ys(wh)), fill: COLORS[0],
                              class: "bar" + (p.open ? " open" : ""), "data-party": page.party});
    rect.append(svg("title", {}, `${energy(wh)} consumed, ${when(p.start)}`));
    bars.append(rect);
  }
  chart.append(bars);
  if (page.share != null) {
    const line = svg("g", {class: "generation"});
    line.append(svg("polyline", {points: points.map((p) => `${xs(p.start_ms + series.bucket_ms / 2)},${ys(gen(p))}`).join(" ")}));
    chart.append(line);
  }
  const total = points.reduce((s, p) => s + used(p), 0);
  const share = page.share != null ? points.reduce((s, p) => s + gen(p), 0) : null;
  document.getElementById("energy-note").textContent = `${points.length} publish windows up to ${when(series.newest)}: ` +
    `you used ${energy(total)}` + (share != null ? `; your share of the generation (${page.share / 100} %, the line) ` +
    `was ${energy(Math.round(share))}` : "") + ".";
}

async function showReadings(period) {
  page.open = period;
  const panel = document.getElementById("readings-panel");
  panel.hidden = false;
  for (const b of document.querySelectorAll("button.readings"))
    b.setAttribute("aria-expanded", b.getAttribute("data-period") === String(period) ? "true" : "false");
  const title = document.getElementById("readings-title");
  title.textContent = `Readings of period ${period} …`;
  try {
    const r = await getJSON(`/api/holder/readings?party=${encodeURIComponent(page.party)}&period=${period}`);
    title.textContent = `Readings of period ${period}: ${r.readings.length}` +
      (r.settled ? " — download a proof and check it with scb verify --proof FILE" : " (not settled yet: no proofs)");
    const rows = r.readings.map((x) => el("tr", {"data-reading": String(x.id)},
      el("td", {text: String(x.id)}), el("td", {text: `${x.meter}#${x.seq}`}), el("td", {text: when(x.time)}),
      el("td", {text: energy(x.delta_wh)}), el("td", {text: `${x.register_wh} Wh`}),
      el("td", {class: "mono", title: x.digest, text: short(x.digest, 8)}),
      el("td", {}, r.settled ? el("a", {class: "proof", href: `/api/proof?reading=${x.id}`, download: `proof-${x.id}.json`,
                                        text: "proof"}) : "–")));
    fill(document.querySelector("#readings tbody"), rows, "no readings of this holder in the period", 7);
    title.focus();
  } catch (e) {
    title.textContent = `Readings of period ${period}: ${e.message}`;
  }
}

async function refresh() {
  clearTimeout(page.timer);
  try {
    const [h, status] = await Promise.all([getJSON(`/api/holder?party=${encodeURIComponent(page.party)}`),
                                           getJSON("/api/status")]);
    page.refreshS = status.dashboard.refresh_s;
    problem("");
    renderStanding(h);
    renderBills(h);
    renderPayments(h);
    drawConsumption(await getJSON("/api/energy?bucket=window"));
    document.body.setAttribute("data-loaded", "yes");
  } catch (e) {
    problem(e.message);
  }
  page.timer = setTimeout(refresh, page.refreshS * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("party").textContent = page.party;
  document.title = `SCB household ${page.party}`;
  document.getElementById("bills-csv").setAttribute("href", csvLink("bills"));
  document.getElementById("readings-csv").setAttribute("href", csvLink("readings"));
  document.getElementById("bills").addEventListener("click", (e) => {
    const button = e.target.closest("button.readings");
    if (button) showReadings(Number(button.getAttribute("data-period")));
  });
  refresh();
  const asked = new URLSearchParams(window.location.search).get("period");
  if (asked && /^[0-9]+$/.test(asked)) showReadings(Number(asked));
});
