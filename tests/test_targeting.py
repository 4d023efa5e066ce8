"""DESI target selection in the simulator: the cuts against desitarget's, the programmes of a
simulated survey, and bad --programmes values."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from galclip.sim import targeting as T


def _mags_to_fluxes(**mags) -> dict[str, np.ndarray]:
    return {k: 10 ** (-0.4 * (np.atleast_1d(np.asarray(v, dtype=float)) - 22.5))
            for k, v in mags.items()}


def _random_photometry(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Magnitudes spread over all the cuts' boundaries; fibre fluxes 10-100 % of the total."""
    r = rng.uniform(11.0, 24.0, n)
    m = {"g": r + rng.uniform(-1.5, 4.5, n), "r": r, "z": r - rng.uniform(-1.5, 4.5, n)}
    m["w1"] = m["z"] - rng.uniform(-2.0, 3.0, n)
    m["w2"] = m["w1"] - rng.uniform(-1.0, 1.0, n)
    f = _mags_to_fluxes(**m)
    frac = rng.uniform(0.1, 1.0, n)
    for b in "grz":
        f[f"{b}fib"] = frac * f[b]
    f["rfibtot"], f["zfibtot"] = f["rfib"] * rng.uniform(1, 1.5, n), f["zfib"] * rng.uniform(1, 1.5, n)
    return f


@pytest.mark.slow   # importing desitarget takes about 2 s
def test_cuts_reproduce_desitarget_on_random_photometry():
    warnings.filterwarnings("ignore")
    cuts = pytest.importorskip("desitarget.cuts")
    n = 200_000
    f = _random_photometry(n, np.random.default_rng(0))
    one, zero = np.ones(n), np.zeros(n)
    kw = dict(gflux=f["g"], rflux=f["r"], zflux=f["z"], w1flux=f["w1"], w2flux=f["w2"])
    for targ, mine in (("bright", T.bgs_bright), ("faint", T.bgs_faint)):
        ref = cuts.isBGS_colors(rfiberflux=f["rfib"], rfibertotflux=f["rfibtot"], south=True,
                                targtype=targ, **kw)
        assert np.array_equal(mine(f), ref) and 100 < ref.sum() < n - 100, targ
    ref = cuts.isLRG(zfiberflux=f["zfib"], zfibertotflux=f["zfibtot"], rfluxivar=one,
                     zfluxivar=one, w1fluxivar=one, gaiagmag=zero, gnobs=one, rnobs=one,
                     znobs=one, maskbits=zero.astype(int), south=True, **kw)
    assert np.array_equal(T.lrg(f), ref) and ref.sum() > 100
    vlo, lop = cuts.isELG(gfiberflux=f["gfib"], gsnr=one, rsnr=one, zsnr=one, gnobs=one,
                          rnobs=one, znobs=one, maskbits=zero.astype(int), south=True, **kw)
    mine_lop, mine_vlo = T.elg_classes(f)
    assert np.array_equal(mine_lop, lop) and np.array_equal(mine_vlo, vlo) and vlo.sum() > 100


def _galaxy(g, r, z, w1, fib=0.5, w2=None):
    f = _mags_to_fluxes(g=g, r=r, z=z, w1=w1, w2=w1 if w2 is None else w2)
    return T.photometry_dict({k: v[0] for k, v in f.items()}, fib)


@pytest.mark.parametrize("case, expected", [
    # BGS Bright: r < 19.5; fibre 0.5 -> r_fib = r + 0.75 passes the fibre-magnitude cut
    (dict(g=20.3, r=19.45, z=19.0, w1=19.5), ("bgs_bright",)),
    (dict(g=20.3, r=19.55, z=19.0, w1=19.5), ("bgs_faint",)),
    # BGS Faint needs r_fib < 20.75, or < 21.5 with a red (z - W1) - 1.2 (g - r) + 1.2 > 0
    (dict(g=20.9, r=20.1, z=19.7, w1=20.5, fib=0.4), ()),          # r_fib 21.09, blue
    (dict(g=20.9, r=20.1, z=19.7, w1=18.5, fib=0.4), ("bgs_faint",)),  # same, red in z - W1
    (dict(g=21.0, r=20.2, z=19.8, w1=19.0), ()),                    # fainter than 20.175
    # an LRG at z ~ 0.8: red r - W1, z_fib < 21.6, above both sliding cuts
    (dict(g=23.5, r=22.0, z=20.6, w1=18.7), ("lrg",)),
    (dict(g=23.5, r=22.0, z=20.9, w1=18.7, fib=0.3), ()),          # z_fib 22.2 > 21.6
    # an ELG: g > 20, r - z 0.6, g - r 0.2 < -1.2 (r - z) + 1.3, g_fib < 24.1
    (dict(g=23.2, r=23.0, z=22.4, w1=22.0), ("elg",)),
    (dict(g=23.2, r=23.0, z=22.4, w1=22.0, fib=0.3), ()),          # g_fib 24.5
    (dict(g=19.9, r=19.7, z=19.1, w1=19.5), ("bgs_faint",)),        # g < 20: not an ELG
])
def test_hand_computed_cases_follow_the_published_cuts(case, expected):
    desi, bgs = (int(np.ravel(x)[0]) for x in T.target_bits(_galaxy(**case)))
    assert T.classes(desi, bgs) == expected


def test_bits_are_desis():
    f = _galaxy(g=21.4, r=19.4, z=18.3, w1=17.2)   # both BGS Bright and LRG
    desi, bgs = (int(np.ravel(x)[0]) for x in T.target_bits(f))
    assert desi == (1 << 0) | (1 << 60) and bgs == 1 << 1
    assert T.classes(desi, bgs) == ("lrg", "bgs_bright")


def test_programme_names_parse_and_bad_ones_are_one_line_errors(tmp_path, capsys):
    from galclip.cli import main

    assert T.parse_programmes("bgs, LRG") == ("lrg", "bgs_bright", "bgs_faint")
    with pytest.raises(ValueError, match="unknown programme 'qso'"):
        T.parse_programmes("bgs,qso")
    assert main(["simulate", "--n", "5", "--out", str(tmp_path / "x"), "--programmes", "bgs,qso"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "argument --programmes" in err[-1] and "bgs, bgs_bright, bgs_faint, lrg, elg" in err[-1]
    assert not (tmp_path / "x").exists()


@pytest.mark.slow    # builds the bagpipes models and simulates 8 galaxies
def test_every_written_galaxy_passes_its_programme_and_shares_are_in_the_manifest(tmp_path):
    pytest.importorskip("bagpipes", reason="the simulator needs the 'sim' extra")
    warnings.filterwarnings("ignore")
    from galclip.data import open_dataset
    from galclip.sim.survey import SimConfig, simulate_survey

    cfg = SimConfig(n=8, seed=5, shard_size=4, programmes="lrg,elg,bgs_bright,bgs_faint")
    simulate_survey(tmp_path / "d", cfg, workers=1, progress=False)
    t = open_dataset(tmp_path / "d").read_columns(
        ["redshift", "programme", "desi_target", "bgs_target", "flux_g_true", "flux_r_true",
         "flux_z_true", "flux_w1", "flux_w2", "ls_fiberflux_g", "ls_fiberflux_r", "ls_fiberflux_z"])
    # the selection is made on the true fluxes (docs/simulate.md: a known simplification)
    f = {b: t[f"flux_{b}_true"] for b in ("g", "r", "z")}
    f.update({b: t[f"flux_{b}"] for b in ("w1", "w2")})
    f.update({f"{b}fib": t[f"ls_fiberflux_{b}"] for b in "grz"})
    f["rfibtot"], f["zfibtot"] = f["rfib"], f["zfib"]
    desi, bgs = T.target_bits(f)
    np.testing.assert_array_equal(desi, t["desi_target"])
    np.testing.assert_array_equal(bgs, t["bgs_target"])
    for i, p in enumerate(t["programme"]):
        assert p in T.classes(int(desi[i]), int(bgs[i]))
        assert T.PROGRAMMES[p].z_min <= t["redshift"][i] <= T.PROGRAMMES[p].z_max
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    progs = manifest["simulator"]["programmes"]
    assert sum(progs["n"].values()) == 8 and abs(sum(progs["share"].values()) - 1) < 1e-9
    assert progs["n"] == {p: int(np.sum(t["programme"] == p)) for p in progs["requested"]}
    assert progs["redshift_windows"]["elg"] == [0.6, 1.6]
