// galclip explorer: predicted redshift densities (galclip serve --predictions) and the
// "unusual galaxies" view (galclip serve --outliers). Uses app.js's helpers (api, el, card, ...).
"use strict";

function drawPdf(svg, p) {
  const W = 260, H = 80, pad = 14;
  svg.setAttribute("viewBox", `0 0 ${W} ${H + pad}`);
  const zs = p.grid, ys = p.pdf;
  const nz = zs.length, ymax = Math.max(...ys) || 1;
  const x = (z) => ((z - zs[0]) / (zs[nz - 1] - zs[0])) * W;
  const y = (v) => H - (v / ymax) * (H - 4);
  if (p.redshift_lo68 !== null && p.redshift_hi68 !== null) {
    svg.appendChild(svgEl("rect", { x: x(p.redshift_lo68), y: 0, width: Math.max(1, x(p.redshift_hi68) - x(p.redshift_lo68)),
      height: H, fill: "#cfe3f7" }));
  }
  let d = "";
  zs.forEach((z, i) => { d += `${i ? "L" : "M"}${x(z).toFixed(1)},${y(ys[i]).toFixed(1)}`; });
  svg.appendChild(svgEl("path", { d, fill: "none", stroke: "#1f5fa8", "stroke-width": 1.5 }));
  if (p.catalog_redshift !== null) {
    const xc = x(p.catalog_redshift);
    svg.appendChild(svgEl("line", { x1: xc, x2: xc, y1: 0, y2: H, stroke: "#d62728", "stroke-width": 1.5 }));
  }
  for (const [z, anchor] of [[zs[0], "start"], [zs[nz - 1], "end"]]) {
    const t = svgEl("text", { x: x(z), y: H + pad - 2, "font-size": 10, "text-anchor": anchor, fill: "#999" });
    t.textContent = `z ${z.toFixed(2)}`;
    svg.appendChild(t);
  }
}

async function addPdf(id) {
  let p;
  try { p = await api(`/api/objects/${id}/redshift_pdf`); } catch (e) { return; }  // no prediction
  const box = el("div", { class: "pdf" });
  const cat = p.catalog_redshift === null ? "unknown" : p.catalog_redshift.toFixed(4);
  box.appendChild(el("p", { class: "muted", text: `predicted z (from ${p.from}) ${fmt(p.redshift)}, ` +
    `68%: ${fmt(p.redshift_lo68)}–${fmt(p.redshift_hi68)} · catalogue z ${cat} (red)` }));
  if (p.pdf && p.grid) {
    const svg = svgEl("svg", { class: "pdf-plot", role: "img", "aria-label": "predicted redshift density" });
    drawPdf(svg, p);
    box.appendChild(svg);
  }
  const c = $("#query .card");
  if (c && c.dataset.id === String(id) && !c.querySelector(".pdf")) c.appendChild(box);
}

async function showUnusual() {
  const by = $("#unusual-by").value;
  try {
    const res = await api(`/api/unusual?by=${encodeURIComponent(by)}&n=24`);
    $("#query").replaceChildren();
    $("#results").replaceChildren(...res.galaxies.map((g) => {
      const c = card(g, g[by]);
      c.addEventListener("click", () => searchId(g.object_id));
      return c;
    }));
    setStatus(`${res.n} most unusual galaxies by ${by} (larger = more unusual); click one to search from it`);
  } catch (e) {
    setStatus(e.message, true);
  }
}

async function initAnnotations() {
  let a;
  try { a = await api("/api/annotations"); } catch (e) { return; }
  if (a.predictions) {  // each query card app.js shows gets its density
    const seen = (c) => c && !c.querySelector(".pdf") && addPdf(c.dataset.id);
    new MutationObserver(() => seen($("#query .card"))).observe($("#query"), { childList: true });
    seen($("#query .card"));
  }
  if (a.outliers) {
    const sel = el("select", { id: "unusual-by", "aria-label": "score" },
      a.scores.map((s) => el("option", { value: s, text: s })));
    const btn = el("button", { type: "button", id: "unusual-btn", text: "Unusual galaxies" });
    btn.addEventListener("click", showUnusual);
    $(".controls").appendChild(el("div", { id: "unusual" }, [btn, el("span", { class: "muted", text: " sorted by " }), sel]));
  }
}

initAnnotations();
