"""The evaluation report: ``metrics.json``, figures, ``report.md`` and a self-contained
``report.html`` (figures embedded as base64, so the one file can be mailed or archived).

The main table follows AstroCLIP (Parker et al. 2024, Table 2): source, model, type, redshift
R², mean R² of the other properties, mean morphology accuracy; per-property R², photo-z metrics
(sigma_NMAD, bias, outlier fractions) and retrieval follow. A "Findings" section above the
tables puts the headline numbers in sentences (:func:`findings`). Reports only read the metrics.
"""
from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from galclip.data.format import write_json_atomic
from galclip.eval import plots

DASH = "—"
HEADERS = {"source": "Source", "model": "Model", "type": "Type", "redshift_r2": "Redshift R²",
           "mean_property_r2": "Mean property R²", "morphology_accuracy": "Morphology accuracy"}


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return DASH
    return f"{x:.{digits}f}" if isinstance(x, (float, np.floating)) else str(x)


def summary_row(result: Mapping, properties: Sequence[str]) -> dict[str, Any]:
    """One AstroCLIP-style row: redshift R², mean R² of the other properties, morphology."""
    props = result["properties"]
    others = [props[p]["r2"] for p in properties if p != "redshift" and p in props]
    acc = [m["accuracy"] for m in result.get("morphology", {}).values()]
    return {"source": result["source"], "model": result["model"], "type": result["type"],
            "redshift_r2": props.get("redshift", {}).get("r2"),
            "mean_property_r2": float(np.nanmean(others)) if others else None,
            "morphology_accuracy": float(np.mean(acc)) if acc else None,
            **{f"{p}_r2": props[p]["r2"] for p in properties if p in props}}


def tables(metrics: Mapping) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Header and rows of every report table, as strings."""
    props = metrics["properties"]
    rows = [summary_row(r, props) for r in metrics["results"]]
    main_cols = ["source", "model", "type", "redshift_r2", "mean_property_r2",
                 "morphology_accuracy"] + [f"{p}_r2" for p in props if p != "redshift"]
    out = {"main": ([HEADERS.get(c, c.replace("_r2", " R²")) for c in main_cols],
                    [[_fmt(r.get(c)) for c in main_cols] for r in rows])}
    z = [r for r in metrics["results"] if "redshift" in r["properties"]]
    zcols = ["r2", "sigma_nmad", "bias", "eta_0.15", "eta_0.05", "n"]
    out["redshift"] = (["source", "model", "type", *zcols],
                       [[r["source"], r["model"], r["type"],
                         *[_fmt(r["properties"]["redshift"].get(c), 4) for c in zcols]] for r in z])
    morph = sorted({c for r in metrics["results"] for c in r.get("morphology", {})})
    mrows = [r for r in metrics["results"] if r.get("morphology")]
    out["morphology"] = (["source", "model", *[f"{c} acc / F1" for c in morph]],
                         [[r["source"], r["model"], *[
                             f"{_fmt(r['morphology'][c]['accuracy'])} / "
                             f"{_fmt(r['morphology'][c]['f1_macro'])}"
                             if c in r["morphology"] else DASH for c in morph]] for r in mrows])
    out["retrieval"] = _retrieval_table(metrics.get("retrieval", {}))
    agree = metrics.get("retrieval", {}).get("neighbour_agreement_r2", {})
    out["neighbours"] = (["embedding", *[f"{p} R²" for p in props]],
                         [[k, *[_fmt(v.get(p)) for p in props]] for k, v in agree.items()])
    out["label_efficiency"] = _efficiency_table(metrics.get("label_efficiency", {}), props)
    return out


RETRIEVAL_DIRECTIONS = ("image_to_spectrum", "spectrum_to_image")


def retrieval_pools(ret: Mapping) -> list[tuple[str, Mapping]]:
    """The ``(name, block)`` entries of ``metrics['retrieval']`` that are retrieval pools (flat
    ``direction/metric`` keys plus ``pool_size``), leaving out the neighbour-agreement block."""
    return [(name, block) for name, block in ret.items()
            if isinstance(block, Mapping) and "pool_size" in block]


def _retrieval_table(ret: Mapping) -> tuple[list[str], list[list[str]]]:
    cols = ["R@1", "R@5", "R@10", "median_rank"]
    rows = []
    for pool, m in retrieval_pools(ret):
        for d in RETRIEVAL_DIRECTIONS:
            rows.append([f"{pool} ({int(m['pool_size'])})", d.replace("_to_", " → "),
                         *[_fmt(m[f"{d}/{c}"]) for c in cols]])
    return ["pool", "direction", *cols], rows


def _efficiency_table(curves: Mapping, props: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    rows = [[src, f"{float(f) * 100:g} %", str(c["n_train"]), *[_fmt(c.get(p)) for p in props]]
            for src, curve in curves.items() for f, c in sorted(curve.items(), key=lambda kv: float(kv[0]))]
    return ["features", "labels", "n_train", *[f"{p} R²" for p in props]], rows


# ----------------------------------------------------------------------------- rendering
def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


SECTIONS = [("main", "Summary (AstroCLIP Table 2 layout; R² on the evaluation split)"),
            ("redshift", "Redshift: photo-z metrics (Δz = (z_pred − z_true)/(1 + z_true))"),
            ("morphology", "Morphology: accuracy / macro F1 per question"),
            ("label_efficiency", "Label efficiency (few-shot MLP, test R²)"),
            ("retrieval", "Cross-modal retrieval on the evaluation split"),
            ("neighbours", "Same-modality neighbours: R² between each galaxy's properties and its "
                           "nearest neighbour's")]


def _r2(metrics: Mapping, source: str, model: str, type_: str, prop: str = "redshift") -> float | None:
    """R² of one result row (``None`` if the row or the property is absent or not finite)."""
    for r in metrics["results"]:
        if (r["source"], r["model"], r["type"]) == (source, model, type_):
            v = r["properties"].get(prop, {}).get("r2")
            return float(v) if v is not None and np.isfinite(v) else None
    return None


def findings(metrics: Mapping) -> list[str]:
    """Plain sentences that read the summary for the user: where the aligned embeddings stand
    against the supervised baselines and chance, and, where the image falls short of the
    photometry baseline, what the other rows say about why. Computed from ``metrics`` only."""
    out = []
    img = _r2(metrics, "Image", "galclip k-NN", "zero-shot")
    phot = _r2(metrics, "Photometry", "MLP", "supervised")
    if img is not None and phot is not None:
        if img >= phot:
            out.append(f"Image zero-shot redshift R² {img:.3f} is at or above the supervised "
                       f"photometry MLP's {phot:.3f}.")
        else:
            text = (f"Image zero-shot redshift R² {img:.3f} is below the supervised photometry MLP's "
                    f"{phot:.3f}.")
            resnet = _r2(metrics, "Image", "resnet18", "supervised")
            if resnet is not None and resnet < phot:
                text += (f" A ResNet18 trained with the labels on the same cutouts reaches only "
                         f"{resnet:.3f}: at this training-set size a network draws less redshift "
                         f"from the pixels than the MLP does from the catalogue's total fluxes.")
            unaligned = _r2(metrics, "Image", "unaligned k-NN", "zero-shot")
            if unaligned is not None:
                text += (f" The self-supervised image encoder alone scores {unaligned:.3f}; alignment "
                         f"with the spectra raised it to {img:.3f}.")
            out.append(text)
    spec = _r2(metrics, "Spectrum", "galclip k-NN", "zero-shot")
    if spec is not None:
        text = f"Spectrum zero-shot redshift R² {spec:.3f}"
        parts = [f"{label} {v:.3f}" for label, v in (
            ("its self-supervised encoder alone", _r2(metrics, "Spectrum", "unaligned k-NN", "zero-shot")),
            ("the few-shot MLP on the aligned embedding",
             _r2(metrics, "Spectrum", "galclip MLP", "few-shot")),
            ("a supervised network on the same spectra",
             _r2(metrics, "Spectrum", "conv+attention", "supervised"))) if v is not None]
        out.append(text + (" (" + "; ".join(parts) + ")." if parts else "."))
    for _, block in retrieval_pools(metrics.get("retrieval", {})):
        chance = block["pool_size"] / 2
        ranks = [block.get(f"{d}/median_rank") for d in RETRIEVAL_DIRECTIONS]
        if all(r is not None and r > 0 for r in ranks):
            out.append(f"Cross-modal retrieval: median rank {ranks[0]:.0f} (image→spectrum) and "
                           f"{ranks[1]:.0f} (spectrum→image) in a pool of {block['pool_size']:.0f}; "
                           f"chance is {chance:.0f}, so {chance / max(ranks):.1f}× or more better.")
    return out


def _header_lines(metrics: Mapping) -> list[str]:
    prov = metrics["provenance"]
    return [f"model: {prov['model']['path']} (sha256 {prov['model']['sha256'][:12]})",
            f"data: {prov['data']['path']} ({prov['data']['n_rows']} rows); split sizes: "
            + ", ".join(f"{k} {v}" for k, v in metrics["splits"].items()),
            f"galclip {prov['galclip_version']}, {prov['created']}, seed {prov['config']['seed']}",
            f"command: {prov['command']}"]


def render_markdown(metrics: Mapping, figures: Sequence[tuple[str, Path]], out_dir: Path) -> str:
    t = tables(metrics)
    parts = ["# galclip evaluation report", "", *[f"- {line}" for line in _header_lines(metrics)]]
    if found := findings(metrics):
        parts += ["", "## Findings", "", *[f"- {f}" for f in found]]
    for key, title in SECTIONS:
        if t[key][1]:
            parts += ["", f"## {title}", "", _md_table(*t[key])]
    if metrics.get("notes"):
        parts += ["", "## Notes", "", *[f"- {n}" for n in metrics["notes"]]]
    parts += ["", "## Figures", ""]
    parts += [f"### {title}\n\n![{title}]({p.relative_to(out_dir).as_posix()})\n" for title, p in figures]
    parts += ["Every number, with the full config and provenance, is in `metrics.json`."]
    return "\n".join(parts) + "\n"


CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
       "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
       "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
       "td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}th{background:#f0f0f0}"
       "img{max-width:100%}code{background:#f4f4f4}")


def render_html(metrics: Mapping, figures: Sequence[tuple[str, Path]]) -> str:
    """A self-contained page: every figure is embedded as a base64 data URI."""
    t = tables(metrics)
    body = ["<h1>galclip evaluation report</h1><ul>",
            *[f"<li>{html.escape(line)}</li>" for line in _header_lines(metrics)], "</ul>"]
    if found := findings(metrics):
        body += ["<h2>Findings</h2><ul>", *[f"<li>{html.escape(f)}</li>" for f in found], "</ul>"]
    for key, title in SECTIONS:
        if t[key][1]:
            body += [f"<h2>{html.escape(title)}</h2>", _html_table(*t[key])]
    if metrics.get("notes"):
        body += ["<h2>Notes</h2><ul>", *[f"<li>{html.escape(n)}</li>" for n in metrics["notes"]],
                 "</ul>"]
    body.append("<h2>Figures</h2>")
    for title, p in figures:
        data = base64.b64encode(Path(p).read_bytes()).decode()
        body.append(f"<h3>{html.escape(title)}</h3><img alt=\"{html.escape(title)}\" "
                    f"src=\"data:image/png;base64,{data}\">")
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>galclip evaluation"
            f"</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")


def referenced_files(page: str) -> list[str]:
    """Every ``src``/``href`` target of an HTML page that is not a data URI or a link."""
    targets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page)
    return [t for t in targets if not t.startswith(("data:", "http://", "https://", "#"))]


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_documents(out_dir: Path, metrics: Mapping, figures: Sequence[tuple[str, Path]]) -> None:
    """``metrics.json``, ``report.md`` and ``report.html`` in ``out_dir``."""
    out_dir = Path(out_dir)
    missing = [str(p) for _, p in figures if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"report figures missing: {missing}")
    write_json_atomic(out_dir / "metrics.json", _finite(json.loads(json.dumps(metrics, default=_json))))
    _atomic_text(out_dir / "report.md", render_markdown(metrics, figures, out_dir))
    _atomic_text(out_dir / "report.html", render_html(metrics, figures))


def _json(o: Any) -> Any:
    if isinstance(o, (np.integer, np.floating, np.bool_)):
        return o.item()
    if isinstance(o, (np.ndarray, tuple)):
        return list(o)
    return str(o)


def _finite(o: Any) -> Any:
    """NaN and infinities become null, so metrics.json is strict JSON."""
    if isinstance(o, float):
        return o if np.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_finite(v) for v in o]
    return o


# ----------------------------------------------------------------------------- figures
def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def prediction_figures(fig_dir: Path, metrics: Mapping, y_test: np.ndarray,
                       preds: Mapping[str, np.ndarray], dpi: int) -> list[tuple[str, Path]]:
    out = []
    for r in metrics["results"]:
        if r["id"] not in preds:
            continue
        title = f"{r['model']} ({r['type']}), {r['source']}: predicted vs true"
        path = plots.predicted_vs_true(y_test, preds[r["id"]], metrics["properties"],
                                       r["properties"], title, fig_dir / f"pred-{_safe(r['id'])}.png", dpi)
        out.append((title, path))
    return out


def _gallery(ctx, n_queries: int, top: int, seed: int) -> tuple[list, list]:
    """Query galaxies of the evaluation split with their top cross-modal matches (raw data)."""
    img, spec = ctx.emb_test["image"], ctx.emb_test["spectrum"]
    z = np.asarray(ctx.labels_test["redshift"] if "redshift" in ctx.labels_test
                   else np.full(len(img), np.nan), dtype=float)
    queries = np.random.default_rng(seed).choice(len(img), size=min(n_queries, len(img)), replace=False)
    row = lambda i: ctx.ds[int(ctx.test_idx[i])]  # noqa: E731
    fwd, rev = [], []
    for q in queries:
        for sims, out, key in ((img[q] @ spec.T, fwd, "spectrum"), (spec[q] @ img.T, rev, "image")):
            best = np.argsort(-sims, kind="stable")[:top]
            matches = [{**_raw(row(int(j)), key), "z": z[j], "sim": float(sims[j]),
                        "is_match": bool(j == q)} for j in best]
            query = _raw(row(int(q)), "image" if key == "spectrum" else "spectrum")
            out.append({**query, "z": z[q], "matches": matches})
    return fwd, rev


def _raw(r: Mapping, modality: str) -> dict:
    if modality == "image":
        return {"image": r["image"]}
    return {"flux": r["spectrum_flux"], "ivar": r["spectrum_ivar"]}


def make_figures(out_dir: Path, metrics: dict, ctx, preds: Mapping) -> list[tuple[str, Path]]:
    """Every report figure, written under ``out_dir/figures``; returns (title, path) pairs."""
    fig_dir, pc = Path(out_dir) / "figures", ctx.cfg["plots"]
    dpi, props = int(pc["dpi"]), metrics["properties"]
    figures = prediction_figures(fig_dir, metrics, ctx.y_test, preds, dpi)
    if metrics["label_efficiency"]:
        figures.append(("Label efficiency", plots.label_efficiency(
            metrics["label_efficiency"], props, fig_dir / "label-efficiency.png", dpi)))
    if {"image", "spectrum"} <= set(ctx.emb_test):
        rc = ctx.cfg["retrieval"]
        fwd, rev = _gallery(ctx, int(rc["gallery_queries"]), int(rc["gallery_top"]), int(ctx.cfg["seed"]))
        figures += [
            ("Retrieval: image → spectra",
             plots.image_to_spectra(fwd, fig_dir / "gallery-image-to-spectrum.png", dpi)),
            ("Retrieval: spectrum → images",
             plots.spectrum_to_images(rev, fig_dir / "gallery-spectrum-to-image.png", dpi))]
    figures += embedding_maps(fig_dir, metrics, ctx, dpi)
    return figures


def embedding_maps(fig_dir: Path, metrics: dict, ctx, dpi: int) -> list[tuple[str, Path]]:
    pc, seed = ctx.cfg["plots"], int(ctx.cfg["seed"])
    n = len(next(iter(ctx.emb_test.values())))
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, int(pc["max_points"])), replace=False))
    colours = {c: np.asarray(ctx.labels_test[c], dtype=float)[rows]
               for c in ("redshift", "log_ssfr") if c in ctx.labels_test}
    out = []
    for m, emb in ctx.emb_test.items():
        xy, method = plots.project_2d(emb[rows], pc["embedding_map"], seed)
        if method != pc["embedding_map"]:
            metrics["notes"].append(f"embedding map of {m}: {pc['embedding_map']} unavailable, used {method}")
        title = f"{m} embeddings, {method.upper()} ({len(rows)} galaxies)"
        out.append((title, plots.embedding_map(xy, colours, title, fig_dir / f"map-{m}.png", dpi)))
    return out


def write_report(out_dir: Path, metrics: dict, ctx, preds: Mapping) -> None:
    """Figures, then ``metrics.json``, ``report.md`` and ``report.html``."""
    figures = make_figures(out_dir, metrics, ctx, preds)
    metrics["figures"] = [Path(p).relative_to(out_dir).as_posix() for _, p in figures]
    write_documents(out_dir, metrics, figures)
