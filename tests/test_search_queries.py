"""Real-data queries from the CLI and the Python API: cone search by position, the query's
redshift beside its neighbours' spread, result tables written as CSV/Parquet/ECSV, a fibre of
a multi-fibre DESI coadd as the query, and empty results that say so."""
from __future__ import annotations

import json

import numpy as np
import pytest

from search_fixtures import build_all


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("queries"))


@pytest.fixture
def cat(built):
    from galclip.search.api import Catalog

    return Catalog(built.catalog, model=built.model)


@pytest.mark.slow
def test_cone_search_returns_exactly_the_objects_inside_nearest_first(cat):
    from astropy.coordinates import SkyCoord

    ra0, dec0 = float(cat.meta["ra"][5]), float(cat.meta["dec"][5])
    res = cat.cone(ra0 + 1e-4, dec0, radius=30 * 3600.0)
    sky = SkyCoord(cat.meta["ra"], cat.meta["dec"], unit="deg")
    sep = sky.separation(SkyCoord(ra0 + 1e-4, dec0, unit="deg")).arcsec
    assert {n["object_id"] for n in res.neighbours} == set(cat.meta["object_id"][sep <= 30 * 3600])
    assert res.neighbours[0]["object_id"] == cat.meta["object_id"][5]
    got = [n["sep_arcsec"] for n in res.neighbours]
    assert got == sorted(got) and got[0] == pytest.approx(sep[5], abs=1e-6)
    assert len(cat.cone(ra0, dec0, radius=30 * 3600.0, k=2).neighbours) == 2
    with pytest.raises(ValueError, match="dec must be between"):
        cat.cone(10.0, 95.0, 1.0)


def test_result_carries_the_query_redshift_and_the_neighbours_spread(cat):
    oid = int(cat.meta["object_id"][3])
    res = cat.search(id=oid, k=8)
    zs = np.array([n["redshift"] for n in res.neighbours])
    s = res.redshift
    assert s["query"] == pytest.approx(float(cat.meta["redshift"][3]))
    assert s["median"] == pytest.approx(np.median(zs)) and s["n"] == 8
    assert s["p16"] <= s["median"] <= s["p84"]
    assert s["median_abs_dz_1pz"] == pytest.approx(np.median(np.abs(zs - s["query"]) / (1 + s["query"])))


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".ecsv"])
def test_results_table_written_in_each_format_reads_back(cat, tmp_path, suffix):
    from astropy.table import Table

    res = cat.search(id=int(cat.meta["object_id"][0]), k=5)
    path = res.write(tmp_path / f"out{suffix}")
    t = Table.read(path, format={".csv": "ascii.csv", ".parquet": "parquet",
                                 ".ecsv": "ascii.ecsv"}[suffix])
    assert list(t["object_id"]) == [n["object_id"] for n in res.neighbours]
    np.testing.assert_allclose(t["ra"], [n["ra"] for n in res.neighbours], rtol=1e-12)
    if suffix == ".ecsv":
        assert t.meta["galclip_query"]["id"] == int(cat.meta["object_id"][0])
    with pytest.raises(ValueError, match="unknown table format '.txt'"):
        res.write(tmp_path / "out.txt")


def test_cli_cone_out_and_summary(built, tmp_path, capsys, monkeypatch):
    from galclip.cli import main
    from galclip.search.api import Catalog

    monkeypatch.setattr(Catalog, "model", property(lambda self: built.model))
    c = Catalog(built.catalog)
    ra, dec = float(c.meta["ra"][7]), float(c.meta["dec"][7])
    assert main(["search", str(built.catalog), "--ra", str(ra), "--dec", str(dec), "--radius", "1",
                 "--out", str(tmp_path / "cone.csv")]) == 0
    out = capsys.readouterr()
    assert f"{c.meta['object_id'][7]}" in out.out and f"{ra:.6f}" in out.out
    assert "wrote 1 rows" in out.err
    oid = str(c.meta["object_id"][7])
    assert main(["search", str(built.catalog), "--id", oid, "--k", "4"]) == 0
    assert f"query z = {c.meta['redshift'][7]:.4f}; neighbours' z: median" in capsys.readouterr().out
    assert main(["search", str(built.catalog), "--ra", "10"]) == 2
    assert "needs both --ra and --dec" in capsys.readouterr().err


def test_empty_results_say_so(built, capsys, monkeypatch):
    from galclip.cli import main

    oid = "1000"
    assert main(["search", str(built.catalog), "--id", oid, "--where", "redshift > 5"]) == 0
    err = capsys.readouterr().err
    assert "no results: the filter 'redshift > 5' matches no object" in err
    assert main(["search", str(built.catalog), "--ra", "0.5", "--dec", "89.9", "--radius", "1",
                 "--json"]) == 0
    cap = capsys.readouterr()
    assert "no catalog object lies within the cone" in cap.err
    assert json.loads(cap.out)["neighbours"] == []


def test_a_fibre_of_a_multi_fibre_coadd_is_a_query(built, real_data, capsys, monkeypatch):
    from galclip.cli import main
    from galclip.search.api import Catalog

    monkeypatch.setattr(Catalog, "model", property(lambda self: built.model))
    path = str(real_data / "desi" / "coadd-sv3-dark-26065.fits")
    assert main(["search", str(built.catalog), "--spectrum", path]) == 2
    assert "holds 5 spectra; pick one with --targetid or --row" in capsys.readouterr().err
    assert main(["search", str(built.catalog), "--spectrum", path, "--targetid",
                 "39627866878511337", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["query"]["targetid"] == 39627866878511337 and len(res["neighbours"]) == 10
    assert main(["search", str(built.catalog), "--id", "1000", "--row", "2"]) == 2
    assert "--targetid/--row pick a fibre" in capsys.readouterr().err
