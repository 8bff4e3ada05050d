// SCB dashboard, shared by the overview (dashboard.js) and a household's page (holder.js): DOM, fetch and
// formatting helpers. No framework, no external resources. Everything from the server is inserted with
// textContent / attributes, never as HTML.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#2f6fb0", "#c0504d", "#6a9a3a", "#8064a2", "#4bacc6", "#d17a22", "#7f7f7f", "#b5487d"];

// ------------------------------------------------------------------------------------------------ helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(path) {
  const response = await fetch(path, {headers: {"Accept": "application/json"}});
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `${path}: HTTP ${response.status}`);
  return body;
}

function short(s, n) {
  if (!s) return "–";
  n = n || 10;
  return s.length > 2 * n + 1 ? `${s.slice(0, n)}…${s.slice(-4)}` : s;
}

function energy(wh) {
  if (wh === null || wh === undefined) return "–";
  return Math.abs(wh) >= 1000 ? `${(wh / 1000).toFixed(2)} kWh` : `${wh} Wh`;
}

function ether(wei) {
  // wei arrive as decimal strings (they exceed 2^53); BigInt keeps them exact
  if (wei === null || wei === undefined) return "–";
  const v = BigInt(wei), unit = 10n ** 18n;
  const whole = v / unit, frac = (v % unit).toString().padStart(18, "0").slice(0, 6).replace(/0+$/, "");
  return `${whole}${frac ? "." + frac : ""} ETH`;
}

function when(iso) { return iso ? iso.replace("T", " ").replace("Z", "") : "–"; }

function fill(tbody, rows, empty, columns) {
  tbody.replaceChildren();
  if (!rows.length) { tbody.append(el("tr", {}, el("td", {colspan: columns, class: "muted", text: empty}))); return; }
  for (const r of rows) tbody.append(r);
}

function problem(text) {
  const p = document.getElementById("problem");
  p.hidden = !text;
  p.textContent = text || "";
}

function niceStep(max, ticks) {
  const raw = max / ticks, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}
