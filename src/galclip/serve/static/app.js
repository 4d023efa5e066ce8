// galclip explorer: talks only to this server's JSON API; no external resources.
"use strict";

const state = { from: "image", to: "image", info: null, lastQuery: null, lastResult: null,
  querySpectrum: null, preview: null, searchGen: 0, previewGen: 0 };
const $ = (sel) => document.querySelector(sel);
const OPS = [">", ">=", "<", "<=", "==", "!="];

function setStatus(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

// Overlapping requests (a mode switch re-runs the last search while the user uploads a file) must
// not let the slower one decide what the page shows: each search or preview takes a generation
// number, and a response that arrives after a newer one started is dropped.
function generation(key) {
  const mine = ++state[key];
  return () => mine === state[key];
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

function fmt(v, key = "") {
  if (v === null || v === undefined) return "–";
  if ((key === "ra" || key === "dec") && typeof v === "number") return v.toFixed(6);  // 0.0036″
  if (key === "sep_arcsec" && typeof v === "number") return v.toFixed(2);
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
const SHOWN = ["redshift", "ra", "dec", "sep_arcsec"];

function legacySurveyUrl(ra, dec) {  // a link only: the server never fetches it
  const r = ra.toFixed(6), d = dec.toFixed(6);
  return `https://www.legacysurvey.org/viewer?ra=${r}&dec=${d}&layer=ls-dr10&zoom=16&mark=${r},${d}`;
}

function openObjectSpectrum(obj) {
  api(`/api/objects/${obj.object_id}/spectrum?bins=1500`).then((d) => {
    const overlay = state.querySpectrum && state.querySpectrum.id !== obj.object_id ? state.querySpectrum.data : null;
    openSpecView(d, overlay, `spectrum of #${obj.object_id} (z = ${fmt(d.redshift)})` + (overlay ? " · orange: the query" : ""));
  }).catch((e) => setStatus(e.message, true));
}

function card(obj, score) {
  const c = el("div", { class: "card", "data-id": obj.object_id });
  const head = el("div", { class: "head" }, [el("span", { text: `#${obj.object_id}` })]);
  if (score !== undefined && score !== null) head.appendChild(el("span", { class: "score", text: score.toFixed(3) }));
  c.appendChild(head);
  if (state.info.has_data) {
    c.appendChild(el("img", { src: `/api/objects/${obj.object_id}/image.png`, alt: `colour image of ${obj.object_id}`, loading: "lazy" }));
    const svg = svgEl("svg", { class: "spec" });
    svg.addEventListener("click", (e) => { e.stopPropagation(); openObjectSpectrum(obj); });
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
    dl.appendChild(el("dd", { text: fmt(obj[k], k), class: `v-${k}` }));
  }
  c.appendChild(dl);
  if (typeof obj.ra === "number" && typeof obj.dec === "number") {
    const a = el("a", { class: "ls-link", href: legacySurveyUrl(obj.ra, obj.dec), target: "_blank", rel: "noopener", text: "Legacy Survey viewer ↗" });
    a.addEventListener("click", (e) => e.stopPropagation());
    c.appendChild(a);
  }
  return c;
}

function showResults(res) {
  state.lastResult = res;
  const grid = $("#results");
  grid.replaceChildren(...res.neighbours.map((n) => {
    const c = card(n, n.score);
    c.addEventListener("click", () => searchId(n.object_id));
    return c;
  }));
  for (const b of document.querySelectorAll("#downloads button")) b.disabled = !res.neighbours.length;
  const q = res.query;
  const where = q.where ? ` where ${q.where}` : "";
  if (q.cone) {
    const c = q.cone;
    setStatus(`${res.neighbours.length} objects within ${c.radius_arcsec}″ of RA ${c.ra.toFixed(6)}, Dec ${c.dec.toFixed(6)}${where}` +
      (res.neighbours.length ? "" : ": none — widen the radius"));
    return;
  }
  const what = q.id !== undefined ? `object ${q.id}` : `uploaded ${q.file}` + (q.targetid !== undefined ? ` TARGETID ${q.targetid}` : "");
  let text = `${res.neighbours.length} ${q.from} → ${q.to} neighbours of ${what}${where}`;
  if (!res.neighbours.length) text += ": no object matches — loosen the filter";
  const z = res.redshift;
  if (z && z.n) text += ` · query z ${z.query === null ? "unknown" : z.query.toFixed(4)}, neighbours' z median ${z.median.toFixed(4)} (68%: ${z.p16.toFixed(4)}–${z.p84.toFixed(4)})`;
  text += familiarity(q);
  setStatus(text);
}

// The query's out-of-distribution score (galclip.search.ood): flagged when it is farther from
// its 10th neighbour than 99 % of the catalog's held-out galaxies are or, for an uploaded
// spectrum, when its neighbours' redshift disagrees with a template fit more than theirs do.
function familiarity(q) {
  let text = "";
  if (q.ood_score !== undefined && q.ood_score !== null) {
    text = q.unfamiliar
      ? ` · ⚠ UNFAMILIAR query (OOD score ${q.ood_score.toFixed(3)}): unlike the catalog's galaxies — do not trust its neighbours' labels`
      : ` · familiar query (OOD score ${q.ood_score.toFixed(3)})`;
    if (q.ood_check === "distance+redshift" && q.neighbour_z !== null && q.template_z !== null) {
      text += ` · neighbours' z ${q.neighbour_z.toFixed(4)} vs template fit z ${q.template_z.toFixed(4)}`;
    }
  }
  if (q.ivar_estimated) text += " · the file had no ivar: noise estimated from the flux";
  return text;
}

async function showQuery(id, current) {
  const box = $("#query");
  if (id === null) { box.replaceChildren(); return; }
  const obj = await api(`/api/objects/${id}`);
  if (!current()) return;
  const c = card(obj);
  c.querySelector(".head span").textContent = `query #${id}`;
  box.replaceChildren(c);
  state.querySpectrum = null;
  if (state.info.has_data) {
    api(`/api/objects/${id}/spectrum?bins=1500`).then((d) => {
      if (current()) state.querySpectrum = { id: Number(id), data: d };
    }).catch(() => {});
  }
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

// ---------------------------------------------------------------- URL state (permalinks, back button)
function pushURL(params) {
  const qs = `?${params}`;
  if (location.search !== qs) history.pushState(null, "", qs);
}

function setMode(from, to) {
  for (const b of document.querySelectorAll("#mode button")) b.classList.toggle("active", b.dataset.from === from && b.dataset.to === to);
  state.from = from; state.to = to;
}

function setFilters(where) {
  $("#filter-rows").replaceChildren();
  for (const part of (where || "").split(/\s+and\s+/i).filter(Boolean)) {
    const m = part.match(/^\s*(\w+)\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$/);
    if (m) addFilterRow(m[1], m[2], m[3]);
  }
}

function runFromURL() {
  const p = new URLSearchParams(location.search);
  if (p.get("k")) $("#k").value = p.get("k");
  setFilters(p.get("where"));
  if (p.has("ra") && p.has("dec")) {
    $("#cone-ra").value = p.get("ra"); $("#cone-dec").value = p.get("dec");
    if (p.get("radius")) $("#cone-radius").value = p.get("radius");
    searchCone(false);
  } else if (p.has("id")) {
    setMode(p.get("from") || "image", p.get("to") || p.get("from") || "image");
    searchId(p.get("id"), false);
  }
}

// ---------------------------------------------------------------- searching
async function searchId(id, push = true) {
  $("#object-id").value = id;
  state.lastQuery = { id };
  const params = new URLSearchParams({ id, from: state.from, to: state.to, k: $("#k").value });
  const where = whereClause();
  if (where) params.set("where", where);
  if (push) pushURL(params);
  const current = generation("searchGen");
  setStatus("searching…");
  try {
    await showQuery(id, current);
    const res = await api(`/api/search?${params}`);
    if (current()) showResults(res);
  } catch (e) {
    if (current()) setStatus(e.message, true);
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
  const pick = $("#targetid");
  if (kind === "spectrum" && !pick.hidden && pick.value !== "") form.append("targetid", pick.value);
  form.append("to", state.to);
  form.append("k", $("#k").value);
  const where = whereClause();
  if (where) form.append("where", where);
  state.lastQuery = { upload: true };
  const current = generation("searchGen");
  setStatus("embedding upload…");
  try {
    await showQuery(null, current);
    const sp = state.preview && state.preview.spectrum;
    state.querySpectrum = sp ? { id: null, data: sp } : null;
    const res = await api("/api/search/upload", { method: "POST", body: form });
    if (current()) showResults(res);
  } catch (e) {
    if (current()) setStatus(e.message, true);
  }
}

function pickMode(button) {
  setMode(button.dataset.from, button.dataset.to);
  $("#upload-kind").value = state.from;
  if (state.lastQuery && state.lastQuery.id !== undefined) searchId(state.lastQuery.id);
  else if (state.lastQuery && state.lastQuery.upload) searchUpload();
}

async function searchCone(push = true) {
  const ra = $("#cone-ra").value.trim(), dec = $("#cone-dec").value.trim(), radius = $("#cone-radius").value.trim() || "60";
  if (ra === "" || dec === "") { setStatus("a cone search needs RA and Dec (degrees)", true); return; }
  const params = new URLSearchParams({ ra, dec, radius });
  const where = whereClause();
  if (where) params.set("where", where);
  if (push) pushURL(params);
  state.lastQuery = { cone: true };
  const current = generation("searchGen");
  setStatus("searching the cone…");
  try {
    await showQuery(null, current);
    const res = await api(`/api/cone?${params}`);
    if (current()) showResults(res);
  } catch (e) {
    if (current()) setStatus(e.message, true);
  }
}

// ---------------------------------------------------------------- upload preview and TARGETID picker
async function previewUpload() {
  const file = $("#upload-file").files[0], box = $("#preview"), pick = $("#targetid");
  const current = generation("previewGen");
  state.preview = null;
  box.replaceChildren();
  if (!file) return;
  const kind = $("#upload-kind").value, form = new FormData();
  form.append("file", file);
  form.append("kind", kind);
  if (kind === "spectrum" && !pick.hidden && pick.value !== "") form.append("targetid", pick.value);
  try {
    const pv = await api("/api/preview", { method: "POST", body: form });
    if (!current()) return;
    state.preview = pv;
    if (kind === "spectrum" && pv.targets && pv.targets.length && pick.hidden) {
      pick.replaceChildren(...pv.targets.map((t) => el("option", { value: t.targetid, text: `TARGETID ${t.targetid} ${t.objtype || ""} · ${t.n_good} good px` })));
      const good = pv.targets.find((t) => t.n_good > 0);
      if (good) pick.value = String(good.targetid);
      pick.hidden = false;
      return previewUpload();
    }
    if (pv.png) box.appendChild(el("img", { src: pv.png, alt: `preview of ${pv.file}` }));
    if (pv.spectrum) {
      const svg = svgEl("svg", { class: "spec" });
      box.appendChild(svg);
      drawSpectrum(svg, pv.spectrum);
      const view = el("button", { type: "button", id: "preview-view", text: "view spectrum" });
      view.addEventListener("click", () => openSpecView(pv.spectrum, null, `uploaded ${pv.file}`));
      box.appendChild(view);
    }
    box.appendChild(el("span", { class: "muted", text: `preview: ${pv.file}` }));
  } catch (e) {
    if (current()) box.appendChild(el("span", { class: "error", text: e.message }));
  }
}

// ---------------------------------------------------------------- downloads (CSV, VOTable 1.4)
function resultColumns(rows) {
  const cols = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
  return cols;
}

function toCSV(rows) {
  const cols = resultColumns(rows);
  const cell = (v) => (v === null || v === undefined ? "" : /[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  return [cols.join(","), ...rows.map((r) => cols.map((c) => cell(r[c])).join(","))].join("\n") + "\n";
}

function xmlEscape(s) { return String(s).replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]); }

function toVOTable(rows, description) {
  const cols = resultColumns(rows);
  const type = (c) => {
    const vals = rows.map((r) => r[c]).filter((v) => v !== null && v !== undefined);
    if (vals.every((v) => typeof v === "boolean")) return 'datatype="boolean"';
    if (vals.every((v) => Number.isInteger(v))) return 'datatype="long"';
    if (vals.every((v) => typeof v === "number")) return 'datatype="double"';
    return 'datatype="char" arraysize="*"';
  };
  const ucd = { ra: ' ucd="pos.eq.ra;meta.main" unit="deg"', dec: ' ucd="pos.eq.dec;meta.main" unit="deg"', redshift: ' ucd="src.redshift"', sep_arcsec: ' unit="arcsec"' };
  const fields = cols.map((c) => `<FIELD name="${xmlEscape(c)}" ${type(c)}${ucd[c] || ""}/>`).join("\n");
  const td = (v) => `<TD>${v === null || v === undefined ? "" : xmlEscape(v)}</TD>`;
  const trs = rows.map((r) => `<TR>${cols.map((c) => td(r[c])).join("")}</TR>`).join("\n");
  return `<?xml version="1.0" encoding="UTF-8"?>\n<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n<RESOURCE type="results">\n` +
    `<DESCRIPTION>${xmlEscape(description)}</DESCRIPTION>\n<TABLE name="galclip_results">\n${fields}\n<DATA><TABLEDATA>\n${trs}\n</TABLEDATA></DATA>\n</TABLE>\n</RESOURCE>\n</VOTABLE>\n`;
}

function download(format) {
  const res = state.lastResult;
  if (!res) return;
  const text = format === "csv" ? toCSV(res.neighbours) : toVOTable(res.neighbours, `galclip results: ${JSON.stringify(res.query)}`);
  const blob = new Blob([text], { type: format === "csv" ? "text/csv" : "application/x-votable+xml" });
  const a = el("a", { href: URL.createObjectURL(blob), download: `galclip-results.${format === "csv" ? "csv" : "vot"}` });
  document.body.appendChild(a);
  a.click();
  a.remove();
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
    b.addEventListener("click", () => pickMode(b));
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
  $("#k").addEventListener("change", () => state.lastQuery && pickMode(document.querySelector("#mode button.active")));
  $("#cone-form").addEventListener("submit", (e) => { e.preventDefault(); searchCone(); });
  $("#upload-file").addEventListener("change", () => { $("#targetid").hidden = true; previewUpload(); });
  $("#upload-kind").addEventListener("change", () => { $("#targetid").hidden = true; previewUpload(); });
  $("#targetid").addEventListener("change", previewUpload);
  $("#dl-csv").addEventListener("click", () => download("csv"));
  $("#dl-votable").addEventListener("click", () => download("votable"));
  window.addEventListener("popstate", runFromURL);
  initSpecView();
  setStatus("enter an object id, pick an example, search a position, or upload a FITS file");
  runFromURL();
}

init();
