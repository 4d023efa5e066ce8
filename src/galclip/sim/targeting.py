"""DESI's galaxy programmes: who is targeted, over which redshifts, how deep.

A simulated galaxy is written only if it passes the target selection of one of the requested
programmes, applied to its simulated Legacy Survey DR9 photometry exactly as DESI applies it
to the real Tractor catalogue. The cuts are those of desitarget's DR9 main survey
(``desitarget/cuts.py``: ``isBGS_colors``, ``isLRG_colors``, ``isELG_colors``; Myers et al.
2023, AJ 165, 50), in their ``south`` form (DECaLS/DECam): the simulator's g, r, z are the
DECam curves (speclite ``decam2014``) and its images have DECaLS depths, so the northern
(BASS/MzLS) variants, tuned to other filters, would not apply.

- BGS Bright (Hahn et al. 2023, AJ 165, 253): 12 < r < 19.5, the fibre-magnitude cut
  (low-surface-brightness removal), r_fibtot > 15;
- BGS Faint: 19.5 < r < 20.175, the same fibre-magnitude cut and the fibre-colour cut
  (r_fib < 20.75, or r_fib < 21.5 if (z - W1) - 1.2 (g - r) + 1.2 > 0);
- LRG (Zhou et al. 2023, AJ 165, 58): the non-stellar z - W1 cut, z_fib < 21.6, the low-z
  cuts and the double sliding r - W1 cut, z_fibtot > 17.5;
- ELG (Raichoor et al. 2023, AJ 165, 126): g > 20, g_fib < 24.1, r - z > 0.15, the star and
  low-z cut, and the [OII]-flux cut in (r - z, g - r): ELG_LOP, plus the ELG_VLO filler strip.

Fibre fluxes are Legacy Survey FIBERFLUX: the light of the model profile within a 1.5"
diameter in 1" Gaussian seeing; FIBERTOTFLUX (which adds neighbours) is taken equal to it.
The quality masks (NOBS, FLUX_IVAR, MASKBITS, Gaia) are not simulated: every simulated galaxy
is observed in every band away from bright stars. Targets are flagged with DESI's own bits
(``DESI_TARGET``: LRG 0, ELG 1, ELG_LOP 5, ELG_VLO 7, BGS_ANY 60; ``BGS_TARGET``: BGS_FAINT 0,
BGS_BRIGHT 1).

Each programme has a redshift window, the only redshifts the simulator draws for it (it
holds all but the tails of the programme's published n(z)), and necessary flux conditions
(the faintest total magnitudes any of its targets can have) that the rejection sampler bounds
cheaply before computing photometry. For LRGs, W1 < 20.47 follows from the cuts: with
z < 21.6 and the non-stellar cut (r < z + (z - W1 + 0.6) / 0.8), the sliding cut's first
branch (r - W1 > W1 - 16.33) gives W1 < 20.21 and its second (r - W1 > 3.3) W1 < 20.47.
The fibre-magnitude limits (``Programme.fibre``) follow from the cuts in the same way: LRG
z_fib < 21.6, ELG g_fib < 24.1, BGS Faint r_fib < 21.5 (both branches of its fibre-colour cut),
BGS Bright r_fib < 22.9 (every branch of the fibre-magnitude cut with r < 19.5).
LRGs are also proposed from a higher stellar mass (``floor_dex``, an empirical offset: below
it no LRG is expected, benchmarks/RESULTS.md), since their colour cuts select only the massive
end of the galaxies bright enough in z and W1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DESI_BITS = {"LRG": 0, "ELG": 1, "ELG_LOP": 5, "ELG_VLO": 7, "BGS_ANY": 60}
BGS_BITS = {"BGS_FAINT": 0, "BGS_BRIGHT": 1}


@dataclass(frozen=True)
class Programme:
    """One DESI target class as the simulator draws it."""

    name: str            # row value of the ``programme`` column
    z_min: float
    z_max: float
    limits: tuple[tuple[str, float], ...]  # (band, mag): no target is fainter in any of them
    dark: bool           # observed in dark time (LRG, ELG) or bright time (BGS)
    floor_dex: float = 0.0  # proposal mass floor above the young-population one (dex)
    bright: tuple[tuple[str, float], ...] = ()  # (band, mag): no target is brighter
    fibre: tuple[tuple[str, float], ...] = ()   # (band, mag): no target's FIBERFLUX is fainter


LRG_FLOOR_DEX = 0.45
#: The target classes. Each simulated row is drawn for one of the requested programmes, chosen
#: in proportion to DESI's target densities (``DESI_DENSITY``), and must pass its cuts; its
#: bits record every class it is in (an LRG at z 0.4 is often a BGS Bright target too).
PROGRAMMES = {
    "lrg": Programme("lrg", 0.3, 1.2, (("z", 21.6), ("w1", 20.47)), True, LRG_FLOOR_DEX,
                     fibre=(("z", 21.6),)),
    "elg": Programme("elg", 0.6, 1.6, (("g", 24.1),), True, bright=(("g", 20.0),),
                     fibre=(("g", 24.1),)),
    "bgs_bright": Programme("bgs_bright", 0.01, 0.6, (("r", 19.5),), False, fibre=(("r", 22.9),)),
    "bgs_faint": Programme("bgs_faint", 0.01, 0.6, (("r", 20.175),), False, bright=(("r", 19.5),),
                           fibre=(("r", 21.5),)),
}
#: What ``galclip simulate --programmes`` accepts: 'bgs' is BGS Bright and Faint.
CLI_NAMES = {"bgs": ("bgs_bright", "bgs_faint"), "bgs_bright": ("bgs_bright",),
             "bgs_faint": ("bgs_faint",), "lrg": ("lrg",), "elg": ("elg",)}
#: DESI's main-survey target densities (deg^-2): BGS Bright and Faint (Hahn et al. 2023), LRG
#: (Zhou et al. 2023), ELG_LOP + ELG_VLO (Raichoor et al. 2023). They set the programme shares;
#: the simulated population's own densities are 0.7-0.9 of these (benchmarks/RESULTS.md).
DESI_DENSITY = {"bgs_bright": 864.0, "bgs_faint": 533.0, "lrg": 605.0, "elg": 2400.0}


def parse_programmes(text: str) -> tuple[str, ...]:
    """'bgs,lrg' -> ('lrg', 'bgs_bright', 'bgs_faint') in PROGRAMMES order; ValueError names
    the unknown entry."""
    names = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not names:
        raise ValueError(f"--programmes: empty; choose from {', '.join(CLI_NAMES)}")
    chosen: set[str] = set()
    for n in names:
        if n not in CLI_NAMES:
            raise ValueError(f"--programmes: unknown programme {n!r}; choose from "
                             f"{', '.join(CLI_NAMES)}")
        chosen.update(CLI_NAMES[n])
    return tuple(p for p in PROGRAMMES if p in chosen)


def _mag(flux) -> np.ndarray:
    return 22.5 - 2.5 * np.log10(np.clip(np.asarray(flux, dtype=np.float64), 1e-16, None))


def _mags(f: dict) -> dict[str, np.ndarray]:
    return {k: _mag(v) for k, v in f.items()}


def bgs_bright(f: dict) -> np.ndarray:
    """DR9 BGS_BRIGHT (south) colour, magnitude and fibre cuts."""
    m = _mags(f)
    return (_bgs_common(f, m) & (m["r"] < 19.5) & (m["r"] >= 12.0)
            & (m["rfibtot"] >= 15.0))


def bgs_faint(f: dict) -> np.ndarray:
    """DR9 BGS_FAINT (south): 19.5 <= r < 20.175 with the fibre-colour cut."""
    m = _mags(f)
    schlegel = (m["z"] - m["w1"]) - 1.2 * (m["g"] - m["r"]) + 1.2
    rfibcol = (m["rfib"] < 20.75) | ((m["rfib"] < 21.5) & (schlegel > 0))
    return _bgs_common(f, m) & (m["r"] < 20.175) & (m["r"] >= 19.5) & rfibcol


def _bgs_common(f: dict, m: dict) -> np.ndarray:
    """Colour sanity limits (-1 < g - r < 4, -1 < r - z < 4) and the fibre-magnitude cut."""
    g, r, z = (np.asarray(f[b], dtype=np.float64) for b in "grz")
    ok = (r > g * 10 ** (-0.4)) & (r < g * 10 ** 1.6) & (z > r * 10 ** (-0.4)) & (z < r * 10 ** 1.6)
    fmc = (((m["rfib"] < 5.1 + m["r"]) & (m["r"] < 17.8))
           | ((m["rfib"] < 22.9) & (m["r"] < 20.0) & (m["r"] > 17.8))
           | ((m["rfib"] < 2.9 + m["r"]) & (m["r"] > 20)))
    return ok & fmc


def lrg(f: dict) -> np.ndarray:
    """DR9 main-survey LRG (south)."""
    m = _mags(f)
    r_w1 = m["r"] - m["w1"]
    sliding = (((r_w1 > (m["w1"] - 17.14) * 1.8) & (r_w1 > m["w1"] - 16.33)) | (r_w1 > 3.3))
    return ((m["z"] - m["w1"] > 0.8 * (m["r"] - m["z"]) - 0.6) & (m["zfib"] < 21.6)
            & ((m["g"] - m["w1"] > 2.9) | (r_w1 > 1.8)) & sliding & (m["zfibtot"] > 17.5))


def lrg_may_pass(r_flux_min: float, w1_flux_max: float) -> bool:
    """False if no galaxy with r flux >= ``r_flux_min`` and W1 flux <= ``w1_flux_max`` can pass
    the LRG sliding cut (each of its inequalities holds more easily for a fainter r and a
    brighter W1, so the extreme corner decides)."""
    r, w1 = _mag(max(r_flux_min, 1e-16)), _mag(w1_flux_max)
    return bool(((r - w1 > (w1 - 17.14) * 1.8) & (r - w1 > w1 - 16.33)) | (r - w1 > 3.3))


def elg_classes(f: dict) -> tuple[np.ndarray, np.ndarray]:
    """DR9 main-survey (ELG_LOP, ELG_VLO), south."""
    m = _mags(f)
    gr, rz = m["g"] - m["r"], m["r"] - m["z"]
    base = (m["g"] > 20) & (rz > 0.15) & (m["gfib"] < 24.1) & (gr < 0.5 * rz + 0.1)
    lop = base & (gr < -1.2 * rz + 1.3)
    vlo = base & (gr < -1.2 * rz + 1.6) & (gr >= -1.2 * rz + 1.3)
    return lop, vlo


def target_bits(f: dict) -> tuple[np.ndarray, np.ndarray]:
    """(DESI_TARGET, BGS_TARGET) int64 bit masks of the galaxies with photometry ``f``."""
    lop, vlo = elg_classes(f)
    bright, faint, is_lrg = bgs_bright(f), bgs_faint(f), lrg(f)
    bgs = ((bright.astype(np.int64) << BGS_BITS["BGS_BRIGHT"])
           | (faint.astype(np.int64) << BGS_BITS["BGS_FAINT"]))
    desi = ((is_lrg.astype(np.int64) << DESI_BITS["LRG"])
            | ((lop | vlo).astype(np.int64) << DESI_BITS["ELG"])
            | (lop.astype(np.int64) << DESI_BITS["ELG_LOP"])
            | (vlo.astype(np.int64) << DESI_BITS["ELG_VLO"])
            | ((bgs != 0).astype(np.int64) << DESI_BITS["BGS_ANY"]))
    return desi, bgs


def classes(desi_target: int, bgs_target: int) -> tuple[str, ...]:
    """The PROGRAMMES a galaxy with these bits belongs to, in PROGRAMMES order."""
    have = {"lrg": desi_target >> DESI_BITS["LRG"] & 1, "elg": desi_target >> DESI_BITS["ELG"] & 1,
            "bgs_bright": bgs_target >> BGS_BITS["BGS_BRIGHT"] & 1,
            "bgs_faint": bgs_target >> BGS_BITS["BGS_FAINT"] & 1}
    return tuple(p for p in PROGRAMMES if have[p])


def photometry_dict(total: dict, fibre_fraction: float | dict) -> dict[str, float]:
    """The inputs of the cuts from total fluxes (nanomaggies, keys g r z w1 w2) and the
    Legacy Survey fibre fraction (one number, or per component via :func:`fibre_fluxes`)."""
    out = {b: float(total[b]) for b in ("g", "r", "z", "w1", "w2")}
    for b in "grz":
        fib = fibre_fraction[b] if isinstance(fibre_fraction, dict) else fibre_fraction * total[b]
        out[f"{b}fib"] = float(fib)
    out["rfibtot"], out["zfibtot"] = out["rfib"], out["zfib"]
    return out


def fibre_fluxes(components: dict[str, dict], fractions: dict[str, float]) -> dict[str, float]:
    """Per-band fibre flux from per-component total fluxes and fibre fractions."""
    return {b: sum(fractions[c] * components[c][b] for c in fractions) for b in "grz"}
