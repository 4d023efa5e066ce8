"""Figures of the evaluation report; each function takes arrays and writes one PNG.

- predicted vs true per property: 2-D histograms (log density) with the 1:1 line and the
  metrics in the corner;
- label-efficiency curves: test R² against the fraction of training labels;
- retrieval galleries: a query image with its best-matching spectra (and the reverse), with
  true redshifts and cosine similarities; spectra smoothed (inverse-variance weighted, 9
  pixels), shifted to the rest frame of their own redshift, with the main lines marked;
- PIT histograms of the calibrated zero-shot redshift densities (flat = calibrated; U-shaped
  = overconfident, hump = underconfident; Dawid 1984), one step line per source;
- a 2-D map of the embeddings (UMAP, McInnes et al. 2018; PCA when umap-learn is missing or
  ``method="pca"``) coloured by redshift and sSFR.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from galclip import conventions as C
from galclip.render import color_composite, smooth_spectrum

LABELS = {"redshift": "z", "log_mstar": r"log $M_*/M_\odot$", "logz_mw": r"log $Z_{MW}/Z_\odot$",
          "tage_mw": r"$t_{age}$ [Gyr]", "log_ssfr": r"log sSFR [yr$^{-1}$]"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    tmp.replace(path)
    return path


def _corner_text(name: str, m: Mapping[str, float]) -> str:
    lines = [f"$R^2$ = {m.get('r2', float('nan')):.3f}"]
    if name == "redshift":
        lines += [rf"$\sigma_{{NMAD}}$ = {m['sigma_nmad']:.4f}", f"bias = {m['bias']:+.4f}",
                  rf"$\eta_{{0.15}}$ = {m['eta_0.15']:.3f}"]
    else:
        lines.append(f"RMSE = {m.get('rmse', float('nan')):.3f}")
    return "\n".join(lines)


def predicted_vs_true(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str],
                      metrics: Mapping[str, Mapping[str, float]], title: str, path: Path,
                      dpi: int = 90) -> Path:
    """One panel per property: log-density 2-D histogram, 1:1 line, metrics in the corner."""
    from matplotlib.colors import LogNorm

    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(names), figsize=(3.9 * len(names), 3.2), squeeze=False,
                             constrained_layout=True)
    for j, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        t, p = y_true[:, j], y_pred[:, j]
        ok = np.isfinite(t) & np.isfinite(p)
        lo, hi = np.percentile(t[ok], [0.5, 99.5]) if ok.any() else (0.0, 1.0)
        pad = 0.05 * (hi - lo or 1.0)
        rng = [[lo - pad, hi + pad]] * 2
        counts, *_ = np.histogram2d(t[ok], p[ok], bins=40, range=rng)
        # explicit limits: a model whose predictions all fall outside the range has no counts
        norm = LogNorm(vmin=1, vmax=max(2.0, float(counts.max())))
        *_, mesh = ax.hist2d(t[ok], p[ok], bins=40, range=rng, norm=norm, cmap="viridis", cmin=1)
        fig.colorbar(mesh, ax=ax, label="galaxies per bin", shrink=0.85)
        ax.plot(rng[0], rng[0], "r--", lw=1)
        ax.text(0.04, 0.96, _corner_text(name, metrics.get(name, {})), transform=ax.transAxes,
                va="top", fontsize=8, bbox=dict(boxstyle="round", fc="white", alpha=0.8))
        ax.set(xlabel=f"true {LABELS.get(name, name)}", ylabel="predicted", xlim=rng[0], ylim=rng[0])
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_locator(MaxNLocator(5, prune="lower"))  # no clash at the corner
    fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi)


def label_efficiency(curves: Mapping[str, Mapping[str, Mapping[str, float]]],
                     names: Sequence[str], path: Path, dpi: int = 90) -> Path:
    """Test R² against the fraction of training labels, one panel per property."""
    return _save(label_efficiency_figure(curves, names), path, dpi)


def label_efficiency_figure(curves: Mapping[str, Mapping[str, Mapping[str, float]]],
                            names: Sequence[str]):
    """The label-efficiency figure (constrained layout, shared y label, legend outside)."""
    from matplotlib.ticker import FuncFormatter

    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(3.1 * len(names), 3.0), squeeze=False,
                             sharey=True, constrained_layout=True)
    for ax, name in zip(axes[0], names, strict=True):
        for source, curve in curves.items():
            fr = sorted(curve, key=float)
            ax.plot([float(f) * 100 for f in fr], [curve[f][name] for f in fr], "o-", label=source)
        ax.set(xscale="log", title=LABELS.get(name, name), xlabel="training labels [%]")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test $R^2$")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=7)
    return fig


def pit_histograms(photoz: Mapping[str, Mapping], path: Path, dpi: int = 90) -> Path:
    """Density of PIT values per source (``photoz[source]["pit_histogram"]`` counts in equal
    bins of [0, 1]) against the uniform line, KS distance in the legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.2), constrained_layout=True)
    for source, r in photoz.items():
        counts = np.asarray(r["pit_histogram"], float)
        dens = counts / max(counts.sum(), 1) * len(counts)
        edges = np.linspace(0, 1, len(counts) + 1)
        ax.stairs(dens, edges, label=f"{source} (KS {r['pit_ks']:.3f})")
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set(xlabel="PIT = CDF(z_true)", ylabel="density", xlim=(0, 1),
           title="zero-shot redshift PIT (calibrated)")
    ax.legend(fontsize=7)
    return _save(fig, path, dpi)


def _spectrum_axes(ax, flux: np.ndarray, ivar: np.ndarray, z: float | None, label: str) -> None:
    """Smoothed spectrum in the rest frame of ``z`` (observed frame if unknown), lines marked."""
    known = z is not None and np.isfinite(z)
    wave = C.wavelength_grid() / (1 + z) if known else C.wavelength_grid()
    smooth = smooth_spectrum(flux, ivar)
    ax.plot(wave, smooth, lw=0.6, color="k")
    ax.set_xlim(wave[0], wave[-1])
    lo, hi = np.nanpercentile(smooth, [1, 99.5]) if np.isfinite(smooth).any() else (0, 1)
    ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.25 * (hi - lo))  # headroom for the line labels
    for i, (_, rest) in enumerate(C.EMISSION_LINES + C.ABSORPTION_LINES):
        if known and wave[0] < rest < wave[-1]:
            emission = i < len(C.EMISSION_LINES)
            ax.axvline(rest, color="tab:blue" if emission else "tab:red", lw=0.5, alpha=0.6)
    ax.text(0.99, 0.95, label, transform=ax.transAxes, ha="right", va="top", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.ticklabel_format(axis="y", useOffset=False)


GALLERY_NOTE = ("rest-frame wavelength [Å] at each spectrum's z; flux [1e-17 erg/s/cm²/Å], 9-pixel "
                "smoothing\nblue: emission lines ([OII], Hβ, [OIII], Hα, [NII], [SII]); "
                "red: Ca H+K, G band, Mg b, Na D")


def _gallery(n_rows: int, k: int, first: float, width: tuple[float, float]):
    """A figure of ``n_rows`` rows: the query (relative width ``first``), then ``k`` matches;
    figure width ``width[0] + width[1] * k`` inches (at least 8)."""
    plt = _plt()
    return plt.subplots(n_rows, k + 1, figsize=(max(8.0, width[0] + width[1] * k), 0.8 + 1.8 * n_rows),
                        squeeze=False, gridspec_kw={"width_ratios": [first] + [1] * k},
                        constrained_layout=True)


def image_to_spectra(queries: Sequence[Mapping], path: Path, dpi: int = 90) -> Path:
    """Rows: a query image, then its top spectra. ``queries[i]`` holds ``image``, ``z`` and
    ``matches`` (dicts with ``flux``, ``ivar``, ``z``, ``sim``, ``is_match``)."""
    fig, axes = _gallery(len(queries), len(queries[0]["matches"]), first=0.8, width=(2.2, 2.6))
    for row, q in zip(axes, queries, strict=True):
        row[0].imshow(color_composite(q["image"]), origin="lower")
        row[0].set_title(f"query z={q['z']:.3f}", fontsize=7)
        row[0].axis("off")
        for ax, m in zip(row[1:], q["matches"], strict=True):
            star = " ★ own spectrum" if m["is_match"] else ""
            _spectrum_axes(ax, m["flux"], m["ivar"], m["z"],
                           f"z={m['z']:.3f}  sim={m['sim']:.2f}{star}")
    fig.suptitle("image → spectrum retrieval\n" + GALLERY_NOTE, fontsize=8)
    return _save(fig, path, dpi)


def spectrum_to_images(queries: Sequence[Mapping], path: Path, dpi: int = 90) -> Path:
    """Rows: a query spectrum, then its top images (``matches`` hold ``image``, ``z``, ``sim``)."""
    fig, axes = _gallery(len(queries), len(queries[0]["matches"]), first=2.2, width=(3.2, 1.7))
    for row, q in zip(axes, queries, strict=True):
        _spectrum_axes(row[0], q["flux"], q["ivar"], q["z"], f"query z={q['z']:.3f}")
        for ax, m in zip(row[1:], q["matches"], strict=True):
            ax.imshow(color_composite(m["image"]), origin="lower")
            star = " ★" if m["is_match"] else ""
            ax.set_title(f"z={m['z']:.3f} sim={m['sim']:.2f}{star}", fontsize=7)
            ax.axis("off")
    fig.suptitle("spectrum → image retrieval\n" + GALLERY_NOTE, fontsize=8)
    return _save(fig, path, dpi)


def project_2d(emb: np.ndarray, method: str = "umap", seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, E) -> (N, 2) with UMAP (cosine) or PCA; returns the method actually used."""
    if method == "umap":
        try:
            import umap
        except ImportError:
            method = "pca"
        else:
            reducer = umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", random_state=seed)
            return reducer.fit_transform(emb), "umap"
    if method != "pca":
        raise ValueError(f"embedding map method must be 'umap' or 'pca', got {method!r}")
    x = emb - emb.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T, "pca"


def embedding_map(xy: np.ndarray, colours: Mapping[str, np.ndarray], title: str, path: Path,
                  dpi: int = 90) -> Path:
    """Scatter of a 2-D projection, one panel per colour column (e.g. redshift, log sSFR)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(colours), figsize=(4.2 * len(colours), 3.6), squeeze=False)
    for ax, (name, c) in zip(axes[0], colours.items(), strict=True):
        ok = np.isfinite(c)
        lo, hi = np.percentile(c[ok], [2, 98]) if ok.any() else (0, 1)
        sc = ax.scatter(xy[ok, 0], xy[ok, 1], c=c[ok], s=3, cmap="plasma", vmin=lo, vmax=hi)
        fig.colorbar(sc, ax=ax, label=LABELS.get(name, name))
        ax.set(xticks=[], yticks=[])
    fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi)
