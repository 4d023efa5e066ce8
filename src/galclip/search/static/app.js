// galclip explorer: talks only to this server's JSON API; no external resources.
"use strict";

const state = { from: "image", to: "image", info: null, lastQuery: null };
const $ = (sel) => document.querySelector(sel);
const OPS = [">", ">=", "<", "<=", "==", "!="];

function setStatus(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function api(url, options) {
  const resp = await fetch(url, options);
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(detail || `HTTP ${resp.status}`);
  }
  return body;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number" && !Number.isInteger(v)) return Math.abs(v) >= 1000 ? v.toFixed(1) : v.toPrecision(4);
  return String(v);
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.appendChild(c);
  return node;
}

// ---------------------------------------------------------------- spectrum plot (inline SVG)
const SVG = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  return n;
}

function drawSpectrum(svg, data) {
  const W = 300, H = 80, pad = 2;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const pts = data.wavelength.map((w, i) => [w, data.flux[i]]).filter((p) => p[1] !== null);
  if (!pts.length) return;
  const ys = pts.map((p) => p[1]).sort((a, b) => a - b);
  const lo = ys[Math.floor(0.01 * (ys.length - 1))], hi = ys[Math.floor(0.995 * (ys.length - 1))];
  const w0 = data.wavelength[0], w1 = data.wavelength[data.wavelength.length - 1];
  const x = (w) => pad + ((w - w0) / (w1 - w0)) * (W - 2 * pad);
  const y = (f) => H - pad - ((Math.min(Math.max(f, lo), hi) - lo) / (hi - lo || 1)) * (H - 12);
  let lastLabel = -Infinity;
  for (const line of data.lines) {
    const lx = x(line.observed);
    svg.appendChild(svgEl("line", { class: "line", x1: lx, x2: lx, y1: 9, y2: H }));
    if (lx - lastLabel < 22) continue;  // label close pairs ([OIII], [NII]+Hα, [SII]) once
    const t = svgEl("text", { x: lx + 1, y: 8 });
    t.textContent = line.name;
    svg.appendChild(t);
    lastLabel = lx;
  }
  const d = pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
  svg.appendChild(svgEl("polyline", { class: "flux", points: d }));
  const title = svgEl("title", {});
  title.textContent = `spectrum, lines at z = ${fmt(data.redshift)}`;
  svg.appendChild(title);
}

// ---------------------------------------------------------------- cards
const SHOWN = ["redshift", "ra", "dec"];
function card(obj, score) {
  const c = el("div", { class: "card", "data-id": obj.object_id });
  const head = el("div", { class: "head" }, [el("span", { text: `#${obj.object_id}` })]);
  if (score !== undefined) head.appendChild(el("span", { class: "score", text: score.toFixed(3) }));
  c.appendChild(head);
  if (state.info.has_data) {
    c.appendChild(el("img", { src: `/api/objects/${obj.object_id}/image.png`, alt: `colour image of ${obj.object_id}`, loading: "lazy" }));
    const svg = svgEl("svg", { class: "spec" });
    c.appendChild(svg);
    api(`/api/objects/${obj.object_id}/spectrum?bins=300`).then((d) => drawSpectrum(svg, d)).catch(() => svg.remove());
  } else {
    c.appendChild(el("div", { class: "noimg", text: "no dataset (--data)" }));
  }
  const extra = state.info.filterable_columns.filter((k) => !SHOWN.includes(k) && k !== "object_id" && !k.startsWith("has_")).slice(0, 3);
  const dl = el("dl");
  for (const k of [...SHOWN, ...extra]) {
    if (!(k in obj)) continue;
    dl.appendChild(el("dt", { text: k }));
    dl.appendChild(el("dd", { text: fmt(obj[k]) }));
  }
  c.appendChild(dl);
  return c;
}

function showResults(res) {
  const grid = $("#results");
  grid.replaceChildren(...res.neighbours.map((n) => {
    const c = card(n, n.score);
    c.addEventListener("click", () => searchId(n.object_id));
    return c;
  }));
  const q = res.query;
  const what = q.id !== undefined ? `object ${q.id}` : `uploaded ${q.file}`;
  setStatus(`${res.neighbours.length} ${q.from} → ${q.to} neighbours of ${what}` + (q.where ? ` where ${q.where}` : ""));
}

async function showQuery(id) {
  const box = $("#query");
  if (id === null) { box.replaceChildren(); return; }
  const obj = await api(`/api/objects/${id}`);
  const c = card(obj);
  c.querySelector(".head span").textContent = `query #${id}`;
  box.replaceChildren(c);
}

// ---------------------------------------------------------------- filters
function addFilterRow(column = "redshift", op = ">", value = "") {
  const cols = state.info.filterable_columns.filter((c) => c !== "object_id");
  const colSel = el("select", { "aria-label": "filter column" }, cols.map((c) => el("option", { text: c })));
  colSel.value = cols.includes(column) ? column : cols[0];
  const opSel = el("select", { "aria-label": "filter operator" }, OPS.map((o) => el("option", { text: o })));
  opSel.value = op;
  const val = el("input", { type: "text", placeholder: "value", "aria-label": "filter value", value });
  const rm = el("button", { type: "button", text: "×", title: "remove filter" });
  const row = el("span", { class: "filter-row" }, [colSel, opSel, val, rm]);
  rm.addEventListener("click", () => row.remove());
  $("#filter-rows").appendChild(row);
}

function whereClause() {
  const parts = [];
  for (const row of document.querySelectorAll(".filter-row")) {
    const [col, op, val] = row.querySelectorAll("select, input");
    if (val.value.trim() !== "") parts.push(`${col.value} ${op.value} ${val.value.trim()}`);
  }
  return parts.join(" and ");
}

// ---------------------------------------------------------------- searching
async function searchId(id) {
  $("#object-id").value = id;
  state.lastQuery = { id };
  const params = new URLSearchParams({ id, from: state.from, to: state.to, k: $("#k").value });
  const where = whereClause();
  if (where) params.set("where", where);
  setStatus("searching…");
  try {
    await showQuery(id);
    showResults(await api(`/api/search?${params}`));
  } catch (e) {
    setStatus(e.message, true);
  }
}

async function searchUpload() {
  const file = $("#upload-file").files[0];
  if (!file) { setStatus("choose a FITS file first", true); return; }
  if (file.size > state.info.max_upload_bytes) { setStatus(`file too large (limit ${state.info.max_upload_bytes} bytes)`, true); return; }
  const kind = $("#upload-kind").value;
  const form = new FormData();
  form.append("file", file);
  form.append("kind", kind);
  form.append("to", state.to);
  form.append("k", $("#k").value);
  const where = whereClause();
  if (where) form.append("where", where);
  state.lastQuery = { upload: true };
  setStatus("embedding upload…");
  try {
    await showQuery(null);
    showResults(await api("/api/search/upload", { method: "POST", body: form }));
  } catch (e) {
    setStatus(e.message, true);
  }
}

function setMode(button) {
  for (const b of document.querySelectorAll("#mode button")) b.classList.toggle("active", b === button);
  state.from = button.dataset.from;
  state.to = button.dataset.to;
  $("#upload-kind").value = state.from;
  if (state.lastQuery && state.lastQuery.id !== undefined) searchId(state.lastQuery.id);
  else if (state.lastQuery && state.lastQuery.upload) searchUpload();
}

async function init() {
  try {
    state.info = await api("/api/info");
  } catch (e) {
    setStatus(`cannot read catalog: ${e.message}`, true);
    return;
  }
  const i = state.info;
  $("#summary").textContent = `${i.n_rows.toLocaleString()} galaxies · modalities: ${i.modalities.join(", ")} · model ${i.model_sha256.slice(0, 10)}`;
  for (const b of document.querySelectorAll("#mode button")) {
    if (!i.modalities.includes(b.dataset.from) || !i.modalities.includes(b.dataset.to)) b.disabled = true;
    b.addEventListener("click", () => setMode(b));
  }
  const ex = $("#examples");
  ex.append("Try: ");
  for (const id of i.example_ids) {
    const a = el("a", { text: id, "data-id": id });
    a.addEventListener("click", () => searchId(id));
    ex.appendChild(a);
  }
  $("#id-form").addEventListener("submit", (e) => { e.preventDefault(); searchId($("#object-id").value); });
  $("#upload-form").addEventListener("submit", (e) => { e.preventDefault(); searchUpload(); });
  $("#add-filter").addEventListener("click", () => addFilterRow());
  $("#k").addEventListener("change", () => state.lastQuery && setMode(document.querySelector("#mode button.active")));
  setStatus("enter an object id, pick an example, or upload a FITS file");
}

init();
