"""The evaluation report: ``metrics.json``, figures, ``report.md`` and a self-contained
``report.html`` (figures embedded as base64, so the one file can be mailed or archived).

The main table follows AstroCLIP (Parker et al. 2024, Table 2): source, model, type, redshift
R², mean R² of the other properties, mean morphology accuracy, each row's training budget;
per-property R², photo-z metrics (sigma_NMAD, bias, outlier fractions) and retrieval follow.
Every metric carries its 68 % interval when ``metrics['intervals']`` holds one (bootstrap over
the test galaxies, :mod:`galclip.eval.uncertainty`); morphology accuracies a Wilson interval.
The report opens by saying whether the data are simulated or real (from the dataset's
provenance), lists reference points (AstroCLIP's published real-data figures; on simulated data
a template-fit redshift on the same spectra, :mod:`galclip.eval.references`) and compares each
morphology question with its majority class. A "Findings" section puts the headline numbers in
sentences (:func:`findings`). Rendering only reads the metrics; :func:`add_uncertainty` and
:func:`add_references` fill ``intervals`` and ``references`` from the predictions first.
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

from galclip.eval import plots
from galclip.storage import write_json_atomic

DASH = "—"
HEADERS = {"source": "Source", "model": "Model", "type": "Type", "redshift_r2": "Redshift R²",
           "mean_property_r2": "Mean property R²", "morphology_accuracy": "Morphology accuracy"}


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return DASH
    return f"{x:.{digits}f}" if isinstance(x, (float, np.floating)) else str(x)


def _ci(x: Any, interval: Sequence[float] | None, digits: int = 3) -> str:
    """A value with its 68 % interval, e.g. ``0.557 [0.52, 0.59]``."""
    text = _fmt(x, digits)
    if text == DASH or not interval:
        return text
    d = max(2, digits - 1)
    return f"{text} [{interval[0]:.{d}f}, {interval[1]:.{d}f}]"


def _row_ci(metrics: Mapping, rid: str, prop: str, metric: str = "r2") -> list[float] | None:
    block = metrics.get("intervals", {}).get(rid, {})
    if prop == "mean_property_r2":
        return block.get("mean_property_r2")
    return (block.get(prop) or {}).get(metric)


def summary_row(result: Mapping, properties: Sequence[str]) -> dict[str, Any]:
    """One AstroCLIP-style row: redshift R², mean R² of the other properties, morphology."""
    props = result["properties"]
    others = [props[p]["r2"] for p in properties if p != "redshift" and p in props
              and props[p]["r2"] is not None and np.isfinite(props[p]["r2"])]
    acc = [m["accuracy"] for m in result.get("morphology", {}).values()]
    return {"source": result["source"], "model": result["model"], "type": result["type"],
            "redshift_r2": props.get("redshift", {}).get("r2"),
            "mean_property_r2": float(np.mean(others)) if others else None,
            "morphology_accuracy": float(np.mean(acc)) if acc else None,
            **{f"{p}_r2": props[p]["r2"] for p in properties if p in props}}


def tables(metrics: Mapping) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Header and rows of every report table, as strings."""
    props = metrics["properties"]
    main_cols = ["source", "model", "type", "redshift_r2", "mean_property_r2",
                 "morphology_accuracy"] + [f"{p}_r2" for p in props if p != "redshift"]
    out = {"main": ([*[HEADERS.get(c, c.replace("_r2", " R²")) for c in main_cols], "Budget"],
                    [_main_row(metrics, r, main_cols) for r in metrics["results"]])}
    z = [r for r in metrics["results"] if "redshift" in r["properties"]]
    zcols = ["r2", "sigma_nmad", "bias", "eta_0.15", "eta_0.05", "n"]
    out["redshift"] = (["source", "model", "type", *zcols],
                       [[r["source"], r["model"], r["type"],
                         *[_ci(r["properties"]["redshift"].get(c),
                               _row_ci(metrics, r["id"], "redshift", c), 4) for c in zcols]]
                        for r in z])
    morph = sorted({c for r in metrics["results"] for c in r.get("morphology", {})})
    mrows = [r for r in metrics["results"] if r.get("morphology")]
    out["morphology"] = (["source", "model", *[f"{c} acc / F1" for c in morph]],
                         [[r["source"], r["model"], *[
                             f"{_fmt(r['morphology'][c]['accuracy'])} / "
                             f"{_fmt(r['morphology'][c]['f1_macro'])}"
                             if c in r["morphology"] else DASH for c in morph]] for r in mrows])
    out["k_from_val"] = k_selection_table(metrics)
    out["morphology_vs_majority"] = morphology_vs_majority(metrics)
    out["references"] = _references_table(metrics)
    out["retrieval"] = _retrieval_table(metrics.get("retrieval", {}))
    agree = metrics.get("retrieval", {}).get("neighbour_agreement_r2", {})
    out["neighbours"] = (["embedding", *[f"{p} R²" for p in props]],
                         [[k, *[_fmt(v.get(p)) for p in props]] for k, v in agree.items()])
    out["label_efficiency"] = _efficiency_table(metrics.get("label_efficiency", {}), props)
    from galclip.eval.photoz import table as photoz_table

    out["photoz"] = photoz_table(metrics.get("photoz") or {})
    from galclip.eval.injection import table as injection_table

    out["injection"] = injection_table(metrics.get("injection") or {})
    from galclip.eval.real_spectra import table as real_table

    out["real_spectra"] = real_table(metrics.get("real_spectra") or {})
    return out


def _main_row(metrics: Mapping, result: Mapping, cols: Sequence[str]) -> list[str]:
    row = summary_row(result, metrics["properties"])
    cells = []
    for c in cols:
        prop = {"redshift_r2": "redshift", "mean_property_r2": "mean_property_r2"}.get(
            c, c.removesuffix("_r2"))
        cells.append(_ci(row.get(c), _row_ci(metrics, result.get("id", ""), prop)))
    from galclip.eval.references import budget

    return [*cells, budget(result, metrics.get("provenance", {})) or DASH]


def k_selection_table(metrics: Mapping) -> tuple[list[str], list[list[str]]]:
    """Per k-from-val row and property: the validation R² of every k tried, the chosen k, and
    the evaluation-split R² with it."""
    rows, grid = [], []
    for r in metrics["results"]:
        sel = r.get("k_selection")
        if not sel:
            continue
        grid = sel["grid"]
        for p, k in r["k"].items():
            val = sel["val_r2"].get(p, {})
            rows.append([r["source"], r["model"], p, *[_fmt(val.get(str(g))) for g in grid], str(k),
                         _fmt(r["properties"].get(p, {}).get("r2"))])
    return ["source", "model", "property", *[f"val R² k={g}" for g in grid], "chosen k",
            "R² (evaluation split)"], rows


def morphology_vs_majority(metrics: Mapping) -> tuple[list[str], list[list[str]]]:
    """Per morphology question: the majority class's accuracy, the best model's (with its
    Wilson 68 % interval) and whether any model beats the majority class beyond that interval."""
    from galclip.eval.uncertainty import wilson_interval

    chance = next((r["morphology"] for r in metrics["results"] if r["type"] == "chance"), {})
    rows = []
    for q in sorted(chance):
        base = chance[q]["accuracy"]
        models = [(r["morphology"][q]["accuracy"], r["morphology"][q].get("n", 0), r)
                  for r in metrics["results"] if r["type"] != "chance" and q in r.get("morphology", {})]
        if not models:
            continue
        acc, n, best = max(models, key=lambda m: m[0])
        ci = wilson_interval(acc, n)
        beats = ci is not None and ci[0] > base
        verdict = "beats the majority class" if beats else "NO model beats the majority class"
        rows.append([q.removeprefix("morph_"), _fmt(base), f"{best['model']} ({best['source']})",
                     _ci(acc, ci), verdict])
    return ["question", "majority class", "best model", "its accuracy [68 %]", "verdict"], rows


def _references_table(metrics: Mapping) -> tuple[list[str], list[list[str]]]:
    rows = [[r["source"], r["model"], r["type"], _fmt(r.get("redshift_r2")), r.get("basis", "")]
            for r in metrics.get("references", []) if "model" in r]
    return ["source", "model", "type", "redshift R²", "measured on"], rows


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


SECTIONS = [("main", "Summary (AstroCLIP Table 2 layout; R² on the evaluation split, "
                     "[68 % bootstrap interval])"),
            ("references", "Reference points (not galclip; read the 'measured on' column)"),
            ("redshift", "Redshift: photo-z metrics (Δz = (z_pred − z_true)/(1 + z_true))"),
            ("photoz", "Zero-shot redshift densities and intervals (k-NN, split-conformal "
                       "calibration; PIT KS 0 and coverage 0.68 / 0.95 are ideal)"),
            ("k_from_val", "Zero-shot k chosen on the validation split (per property, the k "
                           "with the best validation R², neighbours from the training split; "
                           "rows 'k from val' in the summary, beside the rows at the fixed knn.k, "
                           "AstroCLIP's 64)"),
            ("injection", "Planted anomalies: galclip outliers on a simulated survey with "
                          "injected truth (read from benchmarks/outlier_injection.py's file; "
                          "AUROC / precision in the top 1 %)"),
            ("real_spectra", "Real DESI spectra through the simulation-trained model (read from "
                             "benchmarks/sim_to_real.py's file; redshift = median of the nearest "
                             "simulated spectra, flag = the OOD score)"),
            ("morphology_vs_majority", "Morphology per question against the majority class"),
            ("morphology", "Morphology: accuracy / macro F1 per question"),
            ("label_efficiency", "Label efficiency (few-shot MLP, test R²)"),
            ("retrieval", "Cross-modal retrieval on the evaluation split"),
            ("neighbours", "Same-modality neighbours: R² between each galaxy's properties and its "
                           "nearest neighbour's")]


def _row(metrics: Mapping, source: str, model: str, type_: str) -> Mapping | None:
    return next((r for r in metrics["results"]
                 if (r["source"], r["model"], r["type"]) == (source, model, type_)), None)


def _r2(metrics: Mapping, source: str, model: str, type_: str, prop: str = "redshift") -> float | None:
    """R² of one result row (``None`` if the row or the property is absent or not finite)."""
    r = _row(metrics, source, model, type_)
    if r is None:
        return None
    v = r["properties"].get(prop, {}).get("r2")
    return float(v) if v is not None and np.isfinite(v) else None


def _versus(metrics: Mapping, a: tuple[str, str, str], b: tuple[str, str, str]) -> str:
    """" The 68 % intervals ... overlap" for row a against row b, when both have intervals."""
    ra, rb = _row(metrics, *a), _row(metrics, *b)
    ia, ib = _row_ci(metrics, ra["id"], "redshift"), _row_ci(metrics, rb["id"], "redshift")
    text = ""
    if ia and ib:
        overlap = ia[0] <= ib[1] and ib[0] <= ia[1]
        text += (f" The 68 % intervals [{ia[0]:.2f}, {ia[1]:.2f}] and [{ib[0]:.2f}, {ib[1]:.2f}] "
                 + ("overlap: at this test-set size the two are indistinguishable."
                    if overlap else "do not overlap."))
    return text


def _budget_note(metrics: Mapping, key: tuple[str, str, str]) -> str:
    """" (training budget: ...; a lower bound on supervised training, not its ceiling)"."""
    from galclip.eval.references import budget

    r = _row(metrics, *key)
    spent = budget(r, metrics.get("provenance", {})) if r else None
    return (f" (training budget: {spent}; a lower bound on what supervised training reaches, "
            f"not its ceiling)") if spent else ""


#: the supervised image baselines' names in the results table -> in a sentence
SUPERVISED_IMAGE = {"conv ResNet": "conv ResNet", "resnet18": "ResNet18"}


def _supervised_image(metrics: Mapping) -> tuple[str, float | None]:
    """The supervised image baseline's table name and redshift R² (None when it did not run)."""
    for name in SUPERVISED_IMAGE:
        r2 = _r2(metrics, "Image", name, "supervised")
        if r2 is not None:
            return name, r2
    return "resnet18", None


def _image_start(metrics: Mapping, img: float) -> str:
    """What alignment did to the image encoder it started from (self-supervised or random)."""
    for name, what in (("unaligned k-NN", "The self-supervised image encoder alone scores"),
                       ("random-init k-NN", "The randomly initialised image encoder that alignment "
                                            "started from scores")):
        start = _r2(metrics, "Image", name, "zero-shot")
        if start is not None:
            moved = "raised" if img >= start else "lowered"
            return f" {what} {start:.3f}; alignment with the spectra {moved} it to {img:.3f}."
    return ""


def findings(metrics: Mapping) -> list[str]:
    """Plain sentences that read the summary for the user: where the aligned embeddings stand
    against the supervised baselines and chance, and, where the image falls short of the
    photometry baseline, what the other rows say about why. Computed from ``metrics`` only."""
    out = []
    img = _r2(metrics, "Image", "galclip k-NN", "zero-shot")
    phot = _r2(metrics, "Photometry", "MLP", "supervised")
    pair = (("Image", "galclip k-NN", "zero-shot"), ("Photometry", "MLP", "supervised"))
    if img is not None and phot is not None:
        if img >= phot:
            text = (f"Image zero-shot redshift R² {img:.3f} is at or above the supervised "
                    f"photometry MLP's {phot:.3f}." + _image_start(metrics, img))
            name, sup = _supervised_image(metrics)
            if sup is not None:
                text += (f" The same cutouts with the labels ({SUPERVISED_IMAGE[name]}"
                         f"{_budget_note(metrics, ('Image', name, 'supervised'))}) reach {sup:.3f}.")
            out.append(text + _versus(metrics, *pair))
        else:
            text = (f"Image zero-shot redshift R² {img:.3f} is below the supervised photometry MLP's "
                    f"{phot:.3f}.")
            name, resnet = _supervised_image(metrics)
            if resnet is not None and resnet < phot:
                text += (f" A {SUPERVISED_IMAGE[name]} trained with the labels on the same cutouts"
                         f"{_budget_note(metrics, ('Image', name, 'supervised'))} reaches only "
                         f"{resnet:.3f}: at this training-set size a network draws less redshift "
                         f"from the pixels than the MLP does from the catalogue's total fluxes.")
            text += _image_start(metrics, img)
            out.append(text + _versus(metrics, *pair))
    spec = _r2(metrics, "Spectrum", "galclip k-NN", "zero-shot")
    if spec is not None:
        text = f"Spectrum zero-shot redshift R² {spec:.3f}"
        parts = [f"{label} {v:.3f}" for label, v in (
            ("its self-supervised encoder alone", _r2(metrics, "Spectrum", "unaligned k-NN", "zero-shot")),
            ("the few-shot MLP on the aligned embedding",
             _r2(metrics, "Spectrum", "galclip MLP", "few-shot")),
            *(("a supervised network on the same spectra"
               + _budget_note(metrics, ("Spectrum", name, "supervised")),
               _r2(metrics, "Spectrum", name, "supervised")) for name in ("1-D ResNet", "conv+attention"))
        ) if v is not None]
        out.append(text + (" (" + "; ".join(parts) + ")." if parts else "."))
    for _, block in retrieval_pools(metrics.get("retrieval", {})):
        chance = block["pool_size"] / 2
        ranks = [block.get(f"{d}/median_rank") for d in RETRIEVAL_DIRECTIONS]
        if all(r is not None and r > 0 for r in ranks):
            out.append(f"Cross-modal retrieval: median rank {ranks[0]:.0f} (image→spectrum) and "
                           f"{ranks[1]:.0f} (spectrum→image) in a pool of {block['pool_size']:.0f}; "
                           f"chance is {chance:.0f}, so {chance / max(ranks):.1f}× or more better.")
    if tf := next((r for r in metrics.get("references", []) if r.get("type") == "classical"), None):
        if tf.get("redshift_r2") is not None:
            out.append(f"A classical template fit reaches redshift R² {tf['redshift_r2']:.3f} on "
                       f"{tf['n']} of the same test spectra: the information the spectra carry.")
    from galclip.eval.real_spectra import finding as real_finding

    if line := real_finding(metrics.get("real_spectra") or {}):
        out.append(line)
    if flat := [r[0] for r in morphology_vs_majority(metrics)[1] if r[-1].startswith("NO")]:
        out.append(f"Morphology: on {', '.join(flat)} no model beats always answering the "
                   f"majority class; their accuracies say nothing about the embeddings.")
    return out


def data_line(metrics: Mapping) -> str:
    """The report's first line: simulated or real data, and what that means for comparisons."""
    from galclip.eval.references import data_origin

    kind, text = data_origin(metrics["provenance"])
    if kind == "simulated":
        return (f"Data: {text}. Every galclip number here is measured on simulated galaxies and "
                f"is not comparable with published real-data figures such as AstroCLIP's.")
    return f"Data: {text}."


def _header_lines(metrics: Mapping) -> list[str]:
    prov = metrics["provenance"]
    return [f"model: {prov['model']['path']} (sha256 {prov['model']['sha256'][:12]})",
            f"data: {prov['data']['path']} ({prov['data']['n_rows']} rows); split sizes: "
            + ", ".join(f"{k} {v}" for k, v in metrics["splits"].items()),
            f"galclip {prov['galclip_version']}, {prov['created']}, seed {prov['config']['seed']}",
            f"command: {prov['command']}"]


def render_markdown(metrics: Mapping, figures: Sequence[tuple[str, Path]], out_dir: Path) -> str:
    t = tables(metrics)
    parts = ["# galclip evaluation report", "", f"**{data_line(metrics)}**", "",
             *[f"- {line}" for line in _header_lines(metrics)]]
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
       "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}"
       "td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}th{background:#f0f0f0}"
       "img{max-width:100%}code{background:#f4f4f4}")


def render_html(metrics: Mapping, figures: Sequence[tuple[str, Path]]) -> str:
    """A self-contained page: every figure is embedded as a base64 data URI."""
    t = tables(metrics)
    body = ["<h1>galclip evaluation report</h1>",
            f"<p class=\"data\"><strong>{html.escape(data_line(metrics))}</strong></p><ul>",
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
    fig_dir, dpi, props = Path(out_dir) / "figures", ctx.cfg.plots.dpi, metrics["properties"]
    figures = prediction_figures(fig_dir, metrics, ctx.y_test, preds, dpi)
    if metrics.get("photoz"):
        figures.append(("Zero-shot redshift PIT", plots.pit_histograms(
            metrics["photoz"], fig_dir / "pit.png", dpi)))
    if metrics["label_efficiency"]:
        figures.append(("Label efficiency", plots.label_efficiency(
            metrics["label_efficiency"], props, fig_dir / "label-efficiency.png", dpi)))
    if {"image", "spectrum"} <= set(ctx.emb_test):
        rc = ctx.cfg.retrieval
        fwd, rev = _gallery(ctx, rc.gallery_queries, rc.gallery_top, ctx.cfg.seed)
        figures += [
            ("Retrieval: image → spectra",
             plots.image_to_spectra(fwd, fig_dir / "gallery-image-to-spectrum.png", dpi)),
            ("Retrieval: spectrum → images",
             plots.spectrum_to_images(rev, fig_dir / "gallery-spectrum-to-image.png", dpi))]
    figures += embedding_maps(fig_dir, metrics, ctx, dpi)
    return figures


def embedding_maps(fig_dir: Path, metrics: dict, ctx, dpi: int) -> list[tuple[str, Path]]:
    pc, seed = ctx.cfg.plots, ctx.cfg.seed
    n = len(next(iter(ctx.emb_test.values())))
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, pc.max_points), replace=False))
    colours = {c: np.asarray(ctx.labels_test[c], dtype=float)[rows]
               for c in ("redshift", "log_ssfr") if c in ctx.labels_test}
    out = []
    for m, emb in ctx.emb_test.items():
        xy, method = plots.project_2d(emb[rows], pc.embedding_map, seed)
        if method != pc.embedding_map:
            metrics["notes"].append(f"embedding map of {m}: {pc.embedding_map} unavailable, used {method}")
        title = f"{m} embeddings, {method.upper()} ({len(rows)} galaxies)"
        out.append((title, plots.embedding_map(xy, colours, title, fig_dir / f"map-{m}.png", dpi)))
    return out


def add_uncertainty(metrics: dict, y_test: np.ndarray, preds: Mapping, seed: int = 0) -> None:
    """``metrics['intervals']``: bootstrap 68 % intervals of every row with predictions."""
    from galclip.eval.uncertainty import bootstrap_intervals

    ids = {r["id"] for r in metrics["results"]}
    metrics["intervals"] = bootstrap_intervals(
        y_test, {k: v for k, v in preds.items() if k in ids}, metrics["properties"], seed=seed)


def add_references(metrics: dict, ctx) -> None:
    """``metrics['references']``: AstroCLIP's published rows and, on simulated data, a template
    fit on the first ``TEMPLATE_FIT_N`` test spectra."""
    from galclip.eval import references as R

    refs = R.published_rows()
    kind, _ = R.data_origin(metrics["provenance"])
    if kind == "simulated" and "spectrum_flux" in ctx.ds.columns:
        tf = R.template_fit_reference(ctx)
        if tf and "skipped" in tf:
            metrics["notes"].append(tf["skipped"])
        elif tf:
            refs.append(tf)
    metrics["references"] = refs


def write_report(out_dir: Path, metrics: dict, ctx, preds: Mapping) -> None:
    """Intervals and reference rows, figures, then ``metrics.json``, ``report.md``, ``report.html``."""
    add_uncertainty(metrics, ctx.y_test, preds, ctx.cfg.seed)
    add_references(metrics, ctx)
    figures = make_figures(out_dir, metrics, ctx, preds)
    metrics["figures"] = [Path(p).relative_to(out_dir).as_posix() for _, p in figures]
    write_documents(out_dir, metrics, figures)
