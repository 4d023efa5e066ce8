"""Sim-to-real: does a model trained only on galclip's simulation recognise real DESI spectra?

For every real DESI spectrum with a redshift in ../shared/data/real (the 25 DESIHIGH "Andes"
flux tables, read with an estimated ivar since they have none, and the pipeline coadds with a
redrock file), the spectrum is embedded with the catalog's model and its redshift predicted as
the median redshift of its k (16) nearest simulated spectra in the aligned embedding
(spectrum -> spectrum). Per programme (BGS, LRG, ELG, QSO, MWS, pipeline coadds), overall and
inside the simulated redshift range: the fraction within 0.01 (1 + z), the catastrophic
fraction (|dz| / (1 + z) > 0.15), how many are flagged unfamiliar by the OOD score
(galclip.search.ood: the k-th-neighbour distance and, where the catalog has one, the redshift
check against a template fit; the spectrum is given to the search, as a user's file would be)
and how many are wrong (outside 0.01 (1 + z)) without being flagged. Controls: the OOD score of
simulated held-out spectra that did not calibrate it (val split; ~1 % should be flagged), of
the same pixel-shuffled, and of a sky-only spectrum.

Beside it the SDSS DR7 colour-redshift check: R^2 of a k-NN (k = 10, 5-fold) regression of z on
(r, g - r) at r < 17.6, on the simulation and on SDSS subsampled to the same size (the mean over
SDSS_DRAWS subsamples, and their spread: at n ~ 200 one subsample's R^2 varies by +-0.09); a
ratio near 1 means the simulated colours carry as much redshift information as real ones.

More real spectra (``--more DIR``, repeatable): every ``coadd-<programme>-<tile>-<night>.fits`` +
``zbest-...`` pair of Andes-format tables in DIR is read the same way, targets already read (by
TARGETID) skipped; the programme is the file's (a mixed "lrgqso" tile's galaxies are counted as
"LRGQSO-GALAXY", not as LRGs). The older versions of the DESIHIGH tables hold 25 targets per
programme instead of 5 (``benchmarks/andes_history.sh CLONE OUT`` extracts them from a clone of
DESIHIGH/desihigh); the summary then also gives the BGS+LRG rows of the shared files and of the
``--more`` files apart.

Usage:  python benchmarks/sim_to_real.py --catalog CATALOG --data SIMDATA [--k 16] [--json out.json]
        [--more DIR ...]
(``galclip evaluate --real-spectra out.json`` puts the table and a one-line finding in the report)
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

K = 16
WITHIN = 0.01
SDSS_DRAWS = 20
CATASTROPHIC = 0.15
TARGET_PROGRAMMES = ("BGS", "LRG")   # the target: >= 90 % of these within 0.01 (1 + z)
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
ANDES = ("bgs-66003", "lrg-68002", "elg-67230", "qso-68002", "mws-66003")
PIPELINE = (("coadd-4-80613-thru20210324.fits", "redrock-4-80613-thru20210324.fits"),
            ("coadd-special-dark-27247.fits", "redrock-special-dark-27247.fits"))


def real_spectra(real: Path) -> list[dict]:
    """Every real spectrum with a redshift: programme, targetid, z, flux, ivar, ivar_estimated."""
    from galclip.data.desi import read_desi_spectra
    from galclip.data.readers import RejectLog

    out = []
    for prog in ANDES:
        out += [{"programme": prog.split("-")[0].upper(), "targetid": t, "z": z, "flux": f,
                 "ivar": iv, "ivar_estimated": True}
                for t, z, _, f, iv in andes_table(real / "desi-andes" / f"coadd-{prog}-20200315.fits")]
    for coadd, rr in PIPELINE:
        b, _ = read_desi_spectra(real / "desi" / coadd, [real / "desi" / rr],
                                 rejects=RejectLog(strict=False))
        out += [{"programme": "coadd", "targetid": int(t), "z": float(z), "flux": f, "ivar": iv,
                 "ivar_estimated": False}
                for t, z, f, iv in zip(b["object_id"], b["redshift"], b["spectrum_flux"],
                                       b["spectrum_ivar"], strict=True)]
    return out


def andes_table(coadd: Path) -> list[tuple]:
    """(targetid, z, spectype, flux, estimated ivar) of every fibre of an Andes-format flux table
    with a redshift in the ``zbest-...`` file beside it; fibres without one are reported."""
    import sys

    from galclip.data.desi import read_redshifts
    from galclip.data.desi_tables import read_flux_table

    zbest = coadd.with_name(coadd.name.replace("coadd-", "zbest-", 1))
    if not zbest.exists():
        raise SystemExit(f"{coadd}: no {zbest.name} beside it")
    tids, flux, ivar = read_flux_table(coadd)
    z = read_redshifts(zbest)
    info = {int(t): (float(zz), str(st))
            for t, zz, st in zip(z["TARGETID"], z["Z"], z["SPECTYPE"], strict=True)}
    missing = [int(t) for t in tids if int(t) not in info]
    if missing:
        print(f"{coadd}: {len(missing)} fibres without a redshift in {zbest.name} skipped "
              f"(TARGETID {missing[0]}, ...)", file=sys.stderr)
    return [(int(t), *info[int(t)], f, iv) for t, f, iv in zip(tids, flux, ivar, strict=True)
            if int(t) in info]


def more_spectra(dirs: list[Path], seen: set[int]) -> list[dict]:
    """Every Andes-format coadd/zbest pair in ``dirs``, targets in ``seen`` (TARGETIDs, updated)
    skipped; each spectrum marked ``source`` = its folder."""
    out = []
    for d in dirs:
        for coadd in sorted(Path(d).glob("coadd-*-*-*.fits")):
            prog = coadd.name.split("-")[1].upper()
            for t, z, spectype, f, iv in andes_table(coadd):
                if t in seen:
                    continue
                seen.add(t)
                out.append({"programme": f"{prog}-{spectype}" if prog == "LRGQSO" else prog,
                            "targetid": t, "z": z, "flux": f, "ivar": iv, "ivar_estimated": True,
                            "source": str(d)})
    return out


def predict(cat, spectra: list[dict], k: int = K) -> None:
    """Adds z_pred (median of the k nearest), ood_score, unfamiliar, cosine of the nearest
    neighbour to each spectrum."""
    for s in spectra:
        res = cat.search(spectrum=(s["flux"], s["ivar"]), k=k)
        s["z_pred"] = float(np.median([n["redshift"] for n in res.neighbours]))
        s["nn_cosine"] = float(res.neighbours[0]["score"])
        s.update({c: res.query[c] for c in ("ood_score", "unfamiliar", "ood_check", "template_z",
                                            "z_tension") if c in res.query})


def summarise(spectra: list[dict], sim_range: tuple[float, float]) -> list[dict]:
    rows = []
    progs = sorted({s["programme"] for s in spectra})
    in_range = [s for s in spectra if sim_range[0] < s["z"] < sim_range[1]]
    target = [s for s in in_range if s["programme"] in TARGET_PROGRAMMES]
    apart = [("BGS+LRG in sim range, shared files", [s for s in target if "source" not in s]),
             ("BGS+LRG in sim range, --more files", [s for s in target if "source" in s])]
    for name, sel in [(p, [s for s in spectra if s["programme"] == p]) for p in progs] + [
            ("all", spectra), ("in sim range", in_range), ("BGS+LRG in sim range", target)] + (
            apart if any("source" in s for s in spectra) else []):
        if not sel:
            continue
        dz = np.array([abs(s["z_pred"] - s["z"]) / (1 + s["z"]) for s in sel])
        flag = np.array([s["unfamiliar"] for s in sel])
        rows.append({"sample": name, "n": len(sel), "within_0.01": int((dz < WITHIN).sum()),
                     "catastrophic": int((dz > CATASTROPHIC).sum()),
                     "unfamiliar": int(flag.sum()),
                     "wrong_unflagged": int(((dz >= WITHIN) & ~flag).sum()),
                     "median_nn_cosine": float(np.median([s["nn_cosine"] for s in sel]))})
    return rows


def controls(cat, data: str, n: int = 200) -> dict:
    """OOD scores of simulated held-out spectra that did not calibrate the score (the val
    split: ~1 % should be flagged), the same pixel-shuffled, and a sky-only spectrum."""
    from galclip import conventions as C
    from galclip.data import open_dataset
    from galclip.data.splits import split_indices
    from galclip.search.ood import ood_scores

    ds = open_dataset(data)
    ids = ds.read_columns(["object_id"])["object_id"]
    val = split_indices(ids, "val")[:n]
    rng = np.random.default_rng(0)
    sims, shuffled, arrays, arrays_shuffled = [], [], [], []
    for i in val:
        r = ds[int(i)]
        sims.append(cat.embed("spectrum", r["spectrum_flux"], r["spectrum_ivar"]))
        p = rng.permutation(C.N_WAVE)
        shuffled.append(cat.embed("spectrum", r["spectrum_flux"][p], r["spectrum_ivar"][p]))
        arrays.append((r["spectrum_flux"], r["spectrum_ivar"]))
        arrays_shuffled.append((r["spectrum_flux"][p], r["spectrum_ivar"][p]))
    wave = C.wavelength_grid()
    sky = 0.5 + sum(20.0 * np.exp(-0.5 * ((wave - w) / 0.8) ** 2)
                    for w in (5578.9, 5891.6, 6302.0, 6365.5, 7341.0, 7821.0, 8399.0, 8827.0,
                              9378.0, 9442.0))
    own = np.array([cat.row_of(int(ids[i])) for i in val])
    sky_ivar = np.full(C.N_WAVE, 4.0)
    out = {}
    for name, vecs, self_rows, spec in (
            ("sim held-out (val split)", np.stack(sims), own, arrays),
            ("same, pixel-shuffled", np.stack(shuffled), None, arrays_shuffled),
            ("sky only", cat.embed("spectrum", sky, sky_ivar)[None], None, [(sky, sky_ivar)])):
        o = ood_scores(cat, "spectrum", vecs, self_rows=self_rows,
                       spectra=tuple(np.stack(a) for a in zip(*spec, strict=True)))
        out[name] = {"n": len(vecs), "median_ood_score": float(np.median(o["ood_score"])),
                     "flagged": float(np.mean(o["unfamiliar"]))}
    return out


def colour_redshift(data: str, real: Path, k: int = 10) -> dict:
    """R^2 of k-NN z from (r, g - r) at r < 17.6: simulation vs SDSS DR7 at equal size."""
    from sklearn.model_selection import cross_val_predict
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from galclip.data import open_dataset
    from galclip.eval.metrics import r2_score
    from galclip.sim.report import SDSS_MAG_LIMIT, load_sdss

    t = open_dataset(data).read_columns(["redshift", "sdss_g", "sdss_r"])
    sel = t["sdss_r"] < SDSS_MAG_LIMIT
    sim = (t["redshift"][sel], t["sdss_r"][sel], (t["sdss_g"] - t["sdss_r"])[sel])
    if len(sim[0]) < 3 * k:   # 5-fold: each fit needs k neighbours among 4/5 of the rows
        return {"n": int(len(sim[0])), "r2_sim": float("nan"), "r2_sdss": float("nan"),
                "r2_sdss_sd": float("nan"), "ratio": float("nan")}

    def r2(z, r, gr) -> float:
        x = np.column_stack([r, gr]).astype(np.float64)
        model = make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=k))
        zp = cross_val_predict(model, x, np.asarray(z, np.float64), cv=5)
        return float(r2_score(np.asarray(z, np.float64), zp))

    rz, rgr, rr = load_sdss(real)
    rng, pool = np.random.default_rng(0), np.flatnonzero(rr < SDSS_MAG_LIMIT)
    picks = [rng.choice(pool, len(sim[0]), replace=False) for _ in range(SDSS_DRAWS)]
    sdss = [r2(rz[p], rr[p], rgr[p]) for p in picks]
    out = {"n": int(len(sim[0])), "r2_sim": r2(*sim), "r2_sdss": float(np.mean(sdss)),
           "r2_sdss_sd": float(np.std(sdss))}
    out["ratio"] = out["r2_sim"] / out["r2_sdss"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", required=True, help="catalog of the simulated survey (galclip embed)")
    ap.add_argument("--data", required=True, help="the simulated dataset (test split, colours)")
    ap.add_argument("--real", default=str(REAL), help="shared/data/real")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--more", nargs="+", default=[], metavar="DIR",
                    help="folders of more Andes-format coadd/zbest tables (duplicates skipped)")
    ap.add_argument("--k", type=int, default=K, help="neighbours whose median z is the estimate "
                    "(default %(default)s; `galclip evaluate`'s k-from-val row picks 4 on the demo)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from galclip.search.api import Catalog

    cat = Catalog(args.catalog)
    spectra = real_spectra(Path(args.real))
    spectra += more_spectra([Path(d) for d in args.more], {s["targetid"] for s in spectra})
    predict(cat, spectra, args.k)
    from galclip.data import open_dataset

    z_sim = open_dataset(args.data).read_columns(["redshift"])["redshift"]
    sim_range = (float(z_sim.min()), float(z_sim.max()))   # the simulated survey's own range
    table = summarise(spectra, sim_range)
    print(f"{len(spectra)} real DESI spectra, catalog {args.catalog} ({cat.n_rows} simulated, "
          f"z {sim_range[0]:.2f}-{sim_range[1]:.2f}), "
          f"z = median of {args.k} nearest simulated spectra, OOD check: "
          f"{spectra[0].get('ood_check', 'distance')}")
    print("| sample | n | within 0.01(1+z) | catastrophic (>0.15) | flagged unfamiliar | "
          "wrong and not flagged | median cos to nearest |\n|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['sample']} | {r['n']} | {r['within_0.01']} | {r['catastrophic']} | "
              f"{r['unfamiliar']} | {r['wrong_unflagged']} | {r['median_nn_cosine']:.3f} |")
    ctl = controls(cat, args.data)
    for name, c in ctl.items():
        print(f"control {name}: n {c['n']}, median OOD score {c['median_ood_score']:.3f}, "
              f"flagged {c['flagged']:.1%}")
    cr = colour_redshift(args.data, Path(args.real))
    print(f"SDSS DR7 colour-redshift check (k-NN z from r, g-r at r < 17.6, n = {cr['n']} each): "
          f"R2 sim {cr['r2_sim']:.3f} vs SDSS {cr['r2_sdss']:.3f} (sd over {SDSS_DRAWS} "
          f"subsamples {cr['r2_sdss_sd']:.3f}), ratio {cr['ratio']:.2f}")
    if args.json:
        per = [{k: v for k, v in s.items() if k not in ("flux", "ivar")} for s in spectra]
        model = cat.manifest.get("model") or {}
        Path(args.json).write_text(json.dumps({
            "catalog": str(Path(args.catalog).resolve()), "model_sha256": model.get("sha256"),
            "k": args.k, "summary": table, "controls": ctl, "colour_redshift": cr,
            "spectra": per}, indent=1))


if __name__ == "__main__":
    main()
