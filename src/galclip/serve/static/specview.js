// galclip explorer: the large spectrum view (axes, drag-to-zoom, rest-frame toggle, lines,
// query-vs-neighbour overlay). Pure SVG; data from /api/objects/{id}/spectrum or an upload preview.
"use strict";

const SV = { main: null, overlay: null, zoom: null, rest: false };
const SVGNS = "http://www.w3.org/2000/svg";
// the lines to mark come from /api/info (galclip.conventions), loaded by app.js into state.info
const svLines = () => (state.info && state.info.lines) || [];

function sv(tag, attrs = {}, text = null) {
  const n = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== null) n.textContent = text;
  return n;
}

function niceTicks(lo, hi, n = 6) {
  const span = hi - lo || 1, raw = span / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(6));
  return out;
}

function frame(spec) {  // wavelength in the chosen frame; null flux dropped
  const z = SV.rest && spec.redshift !== null && spec.redshift !== undefined ? spec.redshift : 0;
  return spec.wavelength.map((w, i) => [w / (1 + z), spec.flux[i]]).filter((p) => p[1] !== null);
}

function median(a) { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.floor(s.length / 2)] : 1; }

function drawSpecView() {
  const svg = document.querySelector("#specview svg");
  svg.replaceChildren();
  if (!SV.main) return;
  const W = 900, H = 320, L = 62, R = 12, T = 22, B = 40;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const series = [["main", SV.main]];
  const overlay = SV.overlay && document.querySelector("#sv-overlay").checked;
  if (overlay) series.push(["overlay", SV.overlay]);
  const pts = series.map(([k, s]) => {
    let p = frame(s);
    if (overlay) { const m = median(p.map((q) => q[1])) || 1; p = p.map((q) => [q[0], q[1] / m]); }
    return [k, p];
  });
  const all = pts.flatMap(([, p]) => p);
  if (!all.length) return;
  const mainPts = pts[0][1];  // the x range follows the main spectrum; the overlay is clipped
  let [x0, x1] = SV.zoom || [Math.min(...mainPts.map((p) => p[0])), Math.max(...mainPts.map((p) => p[0]))];
  const inView = all.filter((p) => p[0] >= x0 && p[0] <= x1).map((p) => p[1]).sort((a, b) => a - b);
  const y0 = inView[Math.floor(0.005 * (inView.length - 1))] ?? 0, y1 = inView[Math.floor(0.998 * (inView.length - 1))] ?? 1;
  const pad = 0.08 * (y1 - y0 || 1);
  const X = (w) => L + ((w - x0) / (x1 - x0)) * (W - L - R);
  const Y = (f) => H - B - ((Math.min(Math.max(f, y0 - pad), y1 + pad) - (y0 - pad)) / (y1 - y0 + 2 * pad || 1)) * (H - T - B);
  const clip = sv("clipPath", { id: "sv-clip" }, null);
  clip.appendChild(sv("rect", { x: L, y: T, width: W - L - R, height: H - T - B }));
  svg.appendChild(clip);
  svg.appendChild(sv("rect", { class: "frame", x: L, y: T, width: W - L - R, height: H - T - B }));
  for (const t of niceTicks(x0, x1, 8)) {
    svg.appendChild(sv("line", { class: "tick", x1: X(t), x2: X(t), y1: H - B, y2: H - B + 5 }));
    svg.appendChild(sv("text", { class: "xtick", x: X(t), y: H - B + 17, "text-anchor": "middle" }, String(t)));
  }
  for (const t of niceTicks(y0 - pad, y1 + pad, 5)) {
    svg.appendChild(sv("line", { class: "tick", x1: L - 5, x2: L, y1: Y(t), y2: Y(t) }));
    svg.appendChild(sv("text", { class: "ytick", x: L - 8, y: Y(t) + 4, "text-anchor": "end" }, String(t)));
  }
  const xl = SV.rest ? "rest-frame wavelength [Å]" : "observed wavelength [Å]";
  svg.appendChild(sv("text", { class: "xlabel", x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, xl));
  const yl = overlay ? "flux / median" : "flux [1e-17 erg/s/cm²/Å]";
  svg.appendChild(sv("text", { class: "ylabel", x: 14, y: (T + H - B) / 2, transform: `rotate(-90 14 ${(T + H - B) / 2})`, "text-anchor": "middle" }, yl));
  const z = SV.main.redshift;
  if (z !== null && z !== undefined) {
    const lastLabel = { em: -Infinity, abs: -Infinity };
    for (const { name, rest, kind } of [...svLines()].sort((a, b) => a.rest - b.rest)) {
      const w = SV.rest ? rest : rest * (1 + z);
      if (w < x0 || w > x1) continue;
      svg.appendChild(sv("line", { class: `mark ${kind}`, x1: X(w), x2: X(w), y1: T, y2: H - B, "data-name": name }));
      if (X(w) - lastLabel[kind] < 8 * name.length + 6) continue;  // close pairs labelled once
      const y = kind === "em" ? T + 11 : T + 24;  // emission labels above absorption labels
      svg.appendChild(sv("text", { class: `mark-label ${kind}`, x: X(w) + 2, y }, name));
      lastLabel[kind] = X(w);
    }
  }
  for (const [k, p] of pts) {
    const d = p.filter((q) => q[0] >= x0 && q[0] <= x1).map((q) => `${X(q[0]).toFixed(1)},${Y(q[1]).toFixed(1)}`).join(" ");
    svg.appendChild(sv("polyline", { class: `sv-${k}`, points: d, "clip-path": "url(#sv-clip)" }));
  }
  if (overlay) {
    svg.appendChild(sv("line", { class: "sv-main", x1: W - R - 150, x2: W - R - 130, y1: H - B - 14, y2: H - B - 14 }));
    svg.appendChild(sv("text", { class: "legend", x: W - R - 126, y: H - B - 10 }, "this object"));
    svg.appendChild(sv("line", { class: "sv-overlay", x1: W - R - 150, x2: W - R - 130, y1: H - B - 30, y2: H - B - 30 }));
    svg.appendChild(sv("text", { class: "legend", x: W - R - 126, y: H - B - 26 }, "the query"));
  }
  SV.scale = { x0, x1, L, R, W };
  svg.dataset.x0 = x0; svg.dataset.x1 = x1; svg.dataset.z = z ?? "";
  document.querySelector("#sv-title").textContent = SV.title || "";
}

function svWavelengthAt(clientX) {
  const svg = document.querySelector("#specview svg"), box = svg.getBoundingClientRect();
  const { x0, x1, L, R, W } = SV.scale, x = ((clientX - box.left) / box.width) * W;
  return x0 + ((x - L) / (W - L - R)) * (x1 - x0);
}

function openSpecView(main, overlay, title) {
  SV.main = main; SV.overlay = overlay; SV.zoom = null; SV.title = title;
  document.querySelector("#sv-overlay").disabled = !overlay;
  document.querySelector("#specview").hidden = false;
  drawSpecView();
  document.querySelector("#specview").scrollIntoView({ block: "nearest" });
}

function initSpecView() {
  const svg = document.querySelector("#specview svg");
  let start = null;
  svg.addEventListener("mousedown", (e) => { start = svWavelengthAt(e.clientX); });
  svg.addEventListener("mouseup", (e) => {
    if (start === null) return;
    const end = svWavelengthAt(e.clientX);
    if (Math.abs(end - start) > 5) SV.zoom = [Math.min(start, end), Math.max(start, end)];
    start = null;
    drawSpecView();
  });
  document.querySelector("#sv-reset").addEventListener("click", () => { SV.zoom = null; drawSpecView(); });
  document.querySelector("#sv-rest").addEventListener("change", (e) => { SV.rest = e.target.checked; SV.zoom = null; drawSpecView(); });
  document.querySelector("#sv-overlay").addEventListener("change", drawSpecView);
  document.querySelector("#sv-close").addEventListener("click", () => { document.querySelector("#specview").hidden = true; });
}
