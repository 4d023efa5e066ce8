"""The survey simulator: galaxies -> paired (image, spectrum) rows -> a galclip dataset.

A row depends only on (seed, row index): its random generator is
``numpy.random.default_rng([seed, index])`` and its ``object_id`` is ``seed * ID_STRIDE +
index``, so surveys simulated with different seeds never share an id (as survey ids do not)
and seed 0 numbers its galaxies 0 ... N-1. Rows are grouped in shards of ``shard_size``
consecutive indices; workers produce whole shards and write them atomically, so the result
is identical whatever the number of workers, and a killed run resumes from its finished
shards (``.galclip-sim.json`` in the output folder records the run's settings).

``reference`` galaxies (``--reference``) are rows n ... n + reference - 1 of the same survey,
simulated alike and labelled ``split = "reference"`` (:data:`galclip.data.splits.REFERENCE`):
training and evaluation never see them, while the search catalog, the OOD score and ``galclip
predict`` look them up. The survey's own rows are then the rows an ``n``-galaxy run writes, with
their usual object-id splits stored in the same column.

The catalogue's measured fluxes ``flux_g/r/z`` draw their noise from a second generator of the
row, ``default_rng([seed, index, PHOTOMETRY_STREAM])``, so that adding them left every other
column (images, spectra, truths) of a seed unchanged.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from galclip import conventions as C
from galclip.sim.population import LOGM_MAX as LOGM_CEILING

STATE_FILE = ".galclip-sim.json"
MAX_DRAWS = 5000
PROPOSAL_OFFSET_DEX = 0.1
ID_STRIDE = 1_000_000_000      # object_id = seed * ID_STRIDE + row index (n < ID_STRIDE)
MAX_SEED = (2 ** 63 - 1) // ID_STRIDE - 1
PHOTOMETRY_STREAM = 1          # third seed word of the catalogue-photometry noise generator
#: default share of spectra at Survey-Validation depth: users meet DESI's deep SV spectra (the
#: Early Data Release, the first month's validation tables) beside main-survey ones, and a model
#: trained on main-survey noise alone read real deep BGS and LRG spectra low (RESULTS.md)
DEEP_FRACTION = 0.25


@dataclass
class SimConfig:
    """Settings of a simulated survey (all recorded in the manifest)."""

    n: int
    seed: int = 0
    #: look-up-only galaxies simulated after the n survey galaxies (module docstring)
    reference: int = 0
    #: DESI target classes written (``targeting.PROGRAMMES`` names, comma-separated)
    programmes: str = "lrg,bgs_bright,bgs_faint"
    mag_limit: float | None = None   # an extra r-band limit on top of the target selection
    mag_bright: float = 14.0         # brighter objects are saturated
    shard_size: int = 64
    image_ivar: bool = False         # also store the per-pixel image inverse variance
    #: share of spectra observed at Survey-Validation depth (``observing.DEEP_DEPTH`` x the tile)
    deep_fraction: float = DEEP_FRACTION

    def validate(self) -> None:
        if not isinstance(self.n, (int, np.integer)) or self.n <= 0:
            raise ValueError(f"--n must be a positive number of galaxies, got {self.n}")
        if not isinstance(self.reference, (int, np.integer)) or self.reference < 0:
            raise ValueError(f"--reference must be a number of galaxies >= 0, got "
                             f"{self.reference}")
        if self.n_rows >= ID_STRIDE:
            raise ValueError(f"--n + --reference must be below {ID_STRIDE} (object ids are seed * "
                             f"{ID_STRIDE} + row), got {self.n_rows}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"--seed must be in [0, {MAX_SEED}] (object ids are seed * "
                             f"{ID_STRIDE} + row and must fit int64), got {self.seed}")
        if not 0.0 <= self.deep_fraction <= 1.0:
            raise ValueError(f"--deep-fraction must be in [0, 1], got {self.deep_fraction}")
        if self.shard_size <= 0:
            raise ValueError(f"shard_size must be positive, got {self.shard_size}")
        if self.mag_limit is not None and not self.mag_bright < self.mag_limit:
            raise ValueError(f"mag_bright ({self.mag_bright}) must be < mag_limit ({self.mag_limit})")
        from galclip.sim.targeting import parse_programmes

        parse_programmes(self.programmes)

    @property
    def n_rows(self) -> int:
        """Rows written: the survey's n and the reference galaxies after them."""
        return self.n + self.reference

    def split_labels(self, rows: range) -> np.ndarray | None:
        """The stored ``split`` of ``rows`` (None without reference galaxies: splits then come
        from the object ids alone, as for any dataset without the column)."""
        if not self.reference:
            return None
        from galclip.data.splits import REFERENCE, assign_splits

        idx = np.asarray(rows)
        labels = assign_splits(object_id(self.seed, idx))
        return np.where(idx < self.n, labels, REFERENCE).astype(str)

    def programme_list(self):
        """The requested :class:`~galclip.sim.targeting.Programme` objects."""
        from galclip.sim.targeting import PROGRAMMES, parse_programmes

        return [PROGRAMMES[p] for p in parse_programmes(self.programmes)]


def object_id(seed: int, index):
    """The id of row ``index`` (an int, or an array of them) of the survey simulated with
    ``seed``: unique across seeds."""
    return np.int64(seed * ID_STRIDE) + np.asarray(index, dtype=np.int64)


#: Bands with a (z, age) table bound. In W1 the brightest population per unit mass is not the
#: young metal-poor one (dust emission, evolved giants): W1 has only the tight bounds.
BOUND_BANDS = ("g", "r", "z")


@dataclass
class Target:
    """An accepted galaxy with its photometry and DESI target bits."""

    galaxy: Any
    phot: dict[str, dict[str, float]]   # 'bulge', 'disc' -> band -> total flux (nanomaggies)
    ls_fibre: dict[str, float]          # Legacy Survey FIBERFLUX per band (nanomaggies)
    desi_target: int
    bgs_target: int
    programme: str


class GalaxySimulator:
    """Renders galaxies one at a time; holds the (expensive) bagpipes models of one process."""

    def __init__(self, cfg: SimConfig):
        from galclip.sim import targeting as T
        from galclip.sim.sed import SEDEngine

        self.cfg = cfg
        self.programmes = cfg.programme_list()
        self.engine = SEDEngine(max_redshift=max(p.z_max for p in self.programmes) + 0.1)
        # per programme: (band, limiting flux in nanomaggies, smallest A(band)/A(V) seen)
        self._limits = {p.name: [(band, self._limit_flux(band, mag),
                                  self.engine.min_attenuation_ratio(band, p.z_min, p.z_max))
                                 for band, mag in p.limits] for p in self.programmes}
        self._logm_min = self._mass_limit_table(self.programmes)
        self._plan = {p.name: self._proposal(p) for p in self.programmes}
        density = np.array([T.DESI_DENSITY[p.name] for p in self.programmes])
        self._share_cdf = np.cumsum(density) / density.sum()
        self.draws = {p.name: [0, 0] for p in self.programmes}  # (draws, accepted) per programme
        self._bound_z, self._bound_logt, self._bound = _cached("flux-bound-v2", self._flux_bound_table)
        self._fibre_bound = _fibre_bound()
        # per programme: (band, limiting fibre flux in nanomaggies, smallest A(band)/A(V) seen)
        self._fibre_limits = {p.name: [(band, float(C.mag_to_nanomaggy(mag)),
                                        self.engine.min_attenuation_ratio(band, p.z_min, p.z_max))
                                       for band, mag in p.fibre] for p in self.programmes}
        self.timings: dict[str, float] = {}  # seconds spent per stage (benchmarks read it)
        self.cpu_timings: dict[str, float] = {}  # CPU seconds of this process per stage

    def _tick(self, stage: str, t0: tuple[float, float]) -> tuple[float, float]:
        t = time.perf_counter(), time.process_time()
        self.timings[stage] = self.timings.get(stage, 0.0) + t[0] - t0[0]
        self.cpu_timings[stage] = self.cpu_timings.get(stage, 0.0) + t[1] - t0[1]
        return t

    def _limit_flux(self, band: str, mag: float) -> float:
        """A necessary flux (nanomaggies) of a programme, with --mag-limit in r."""
        if self.cfg.mag_limit is not None and band == "r":
            mag = min(mag, self.cfg.mag_limit)
        return float(C.mag_to_nanomaggy(mag))

    def _in_window(self, z: float) -> list:
        return [p for p in self.programmes if p.z_min <= z <= p.z_max]

    def _proposal(self, prog) -> tuple:
        """(mass-floor table, redshift table) of the draws for one programme."""
        from galclip.sim.population import floor_weighted_redshifts

        table = self._mass_limit_table([prog])
        return table, floor_weighted_redshifts(prog.z_min, prog.z_max,
                                               lambda z: float(np.interp(z, *table)), lambda z: True)

    def _mass_limit_table(self, programmes: list) -> tuple[np.ndarray, np.ndarray]:
        """Lowest stellar mass proposed at each z: that of a young (0.3 Gyr), metal-poor,
        dust-free population (the lowest mass-to-light ratio the population model draws in
        the optical) at the flux limits of the most permissive of ``programmes`` whose window
        holds z, plus the programme's ``floor_dex`` and ``PROPOSAL_OFFSET_DEX``. Without the offset
        no accepted BGS galaxy in 400 came within 0.06 dex of the bound; 1 % came within 0.32
        dex. The offset makes rejection sampling ~2.5x cheaper at the cost of missing ~0.7 %
        of the flux-limited sample: the very bluest dwarfs just at the magnitude limit. For
        LRGs (z and W1 limits, ``floor_dex`` 0.45) the floor is empirical: of 100 LRGs drawn
        without ``floor_dex`` the least massive lay 0.72 dex above the floor, of 100 drawn
        with it 0.62 dex (Baldry et al.'s mass function); with the present population (Leja et
        al. 2020, quiescent bulges) the least massive of 120 lay 0.26 dex above it, 1 % within
        0.40 dex."""
        from galclip.sim.sed import Population

        # nodes on both sides of every window edge: the floor jumps there
        lo, hi = min(p.z_min for p in programmes), max(p.z_max for p in programmes)
        edges = [e for p in programmes for e in (p.z_min, p.z_max)]
        zs = np.unique(np.concatenate([np.linspace(lo, hi, 97), edges,
                                       [e - 1e-6 for e in edges], [e + 1e-6 for e in edges]]))
        zs = zs[(zs >= lo) & (zs <= hi)]
        ref = Population(age_gyr=0.3, tau_gyr=50.0, log_mformed=10.0, metallicity=0.1,
                         av=0.0, veldisp=50.0)
        logm = []
        for z in zs:
            phot = self.engine.photometry(ref, z)
            floors = [p.floor_dex + max(10.0 + np.log10(flux / phot[band])
                                        for band, flux, _ in self._limits[p.name])
                      for p in programmes if p.z_min <= z <= p.z_max]
            logm.append(min(floors, default=LOGM_CEILING) + PROPOSAL_OFFSET_DEX)
        return zs, np.asarray(logm)

    def _flux_bound_table(self):
        """Upper bound on the g, r, z flux per solar mass formed, as a function of (z, age):
        a constant-SFR (tau = 100 Gyr), metal-poor (Z = 0.025 Zsun), dust-free population is
        the brightest per unit mass at a given age. Used to skip the exact photometry of draws
        that cannot reach a flux limit; it never rejects a galaxy that would pass."""
        from galclip.sim.population import Z_MAX, Z_MIN, age_of_universe
        from galclip.sim.sed import Population

        zs = np.linspace(Z_MIN, Z_MAX, 81)
        logt = np.linspace(np.log10(0.25), np.log10(14.0), 30)
        table = np.zeros((len(BOUND_BANDS), len(zs), len(logt)))
        for i, z in enumerate(zs):
            last = np.full(len(BOUND_BANDS), np.inf)
            for j, lt in enumerate(logt):
                if 10**lt < age_of_universe(z) - 0.01:
                    pop = Population(age_gyr=10**lt, tau_gyr=100.0, log_mformed=0.0,
                                     metallicity=0.025, av=0.0, veldisp=50.0)
                    phot = self.engine.photometry(pop, z)
                    last = np.array([phot[b] for b in BOUND_BANDS])
                table[:, i, j] = last
        # lookups use the lower (z, age) grid corner: make each entry the maximum over all
        # larger z and ages, so the bound holds inside every cell
        table = np.maximum.accumulate(table[:, ::-1, ::-1], axis=1)
        table = np.maximum.accumulate(table, axis=2)[:, ::-1, ::-1]
        return zs, logt, table

    def table_bounds(self, g, band: str = "r", dust: float = 0.7) -> tuple[float, float]:
        """Upper bounds (nanomaggies) on the bulge's and the disc's flux in ``band`` from the
        (z, age) table; ``dust`` is a lower bound on A(band)/A(V) over the rest wavelengths
        the band sees (``SEDEngine.min_attenuation_ratio``)."""
        iz = max(int(np.searchsorted(self._bound_z, g.redshift, side="right")) - 1, 0)
        table = self._bound[BOUND_BANDS.index(band)]
        out = []
        for pop in (g.bulge, g.disc):
            it = max(int(np.searchsorted(self._bound_logt, np.log10(pop.age_gyr), side="right")) - 1, 0)
            out.append(1.2 * 10**pop.log_mformed * table[iz, it] * 10 ** (-0.4 * dust * pop.av))
        return out[0], out[1]

    def flux_upper_bound(self, g, band: str = "r", dust: float = 0.7) -> float:
        """Upper bound (nanomaggies) on the galaxy's flux in ``band`` from the (z, age) table."""
        return sum(self.table_bounds(g, band, dust))

    def tight_flux_bound(self, g, band: str = "r") -> float:
        """A tighter upper bound (nanomaggies) on the galaxy's flux in ``band``: the stellar
        light exact, only the birth-cloud dust, nebular and dust emission bounded
        (``fluxbound.py``); costs ~1/4 of the exact photometry."""
        return (self.engine.flux_upper_bound(g.bulge, g.redshift, band)
                + self.engine.flux_upper_bound(g.disc, g.redshift, band))

    def may_pass(self, g, limit_flux: float | None = None, programme: str | None = None) -> bool:
        """False if, for every requested programme whose window holds the galaxy's redshift,
        an upper bound on its flux in one of the programme's bands is below the programme's
        limit (``limit_flux`` replaces the limit of the r-band programmes), or on its Legacy
        Survey fibre flux below a fibre-magnitude limit (flux bounds times fibre-fraction
        bounds): every limit's table bound first, then, closest to failing first, the tight
        bound of the brighter-bounded component beside the other's table bound, then both
        tight bounds. Bounds reject no galaxy that would pass and consume no
        random numbers, so they change which draws need the exact photometry, never which
        galaxies are accepted. A programme with a bright limit (BGS Faint r > 19.5, ELG g > 20)
        also rejects a draw whose lower flux bound is above it. ``programme`` restricts the
        test to that programme."""
        memo: dict = {}   # tight bounds per (component, band), shared by the programmes
        for prog in self._in_window(g.redshift):
            if programme is not None and prog.name != programme:
                continue
            flux_limits = [(band, limit_flux if limit_flux is not None and band == "r" else flux,
                            dust, (1.0, 1.0)) for band, flux, dust in self._limits[prog.name]]
            limits = flux_limits + [(*limit, self._fibre_fractions(g, memo))
                                    for limit in self._fibre_limits[prog.name]]
            margins = [self._table_margin(g, *limit) for limit in limits]
            if min(margins) < 1.0:
                continue
            # the tight bounds cost ~0.2 ms each: test the limits closest to failing first
            order = sorted(range(len(limits)), key=margins.__getitem__)
            if all(self._may_reach(g, *limits[k], memo) for k in order) and all(
                    sum(self._tight(g, i, band, memo)[0] for i in (0, 1))
                    <= C.mag_to_nanomaggy(mag) for band, mag in prog.bright) and (
                    prog.name != "lrg" or self._lrg_colours_may_pass(g, memo)):
                return True
        return False

    def _fibre_fractions(self, g, memo: dict) -> tuple[float, float]:
        """Upper bounds on the bulge's and the disc's Legacy Survey fibre fractions
        (``fibrebound.py``): a programme's fibre-magnitude limits (``Programme.fibre``) are
        tested on the flux bounds weighted by them. For LRGs the fibre limit (z_fib < 21.6) is
        the total one in a fibre that holds 0.1-0.7 of the light: most draws bright enough in
        z fail it, and the table bounds already show it."""
        if "fibre" not in memo:
            fraction = self._fibre_bound.fractions(g)
            memo["fibre"] = (fraction["bulge"], fraction["disc"])
        return memo["fibre"]

    def _tight(self, g, i: int, band: str, memo: dict) -> tuple[float, float]:
        """(lower, upper) flux bounds of component i (0 bulge, 1 disc) in ``band``."""
        if (i, band) not in memo:
            memo[i, band] = self.engine.flux_bounds((g.bulge, g.disc)[i], g.redshift, band)
        return memo[i, band]

    def _lrg_colours_may_pass(self, g, memo: dict) -> bool:
        """The LRG sliding cut at the faintest r and brightest W1 the bounds allow: most
        galaxies bright enough in z and W1 are too blue or too faint in W1 for their colour."""
        from galclip.sim.targeting import lrg_may_pass

        r_min = sum(self._tight(g, i, "r", memo)[0] for i in (0, 1))
        w1_max = sum(self._tight(g, i, "w1", memo)[1] for i in (0, 1))
        return lrg_may_pass(r_min, w1_max)

    def _table_margin(self, g, band: str, limit: float, dust: float,
                      weights: tuple[float, float]) -> float:
        """The (z, age) table's upper bound on weights[0] x bulge flux + weights[1] x disc flux
        in ``band`` over ``limit`` (below 1: the limit cannot be reached; inf where ``band``
        has no table)."""
        if band not in BOUND_BANDS:
            return float("inf")
        table = self.table_bounds(g, band, dust)
        return (weights[0] * table[0] + weights[1] * table[1]) / limit

    def _may_reach(self, g, band: str, limit: float, dust: float,
                   weights: tuple[float, float], memo: dict) -> bool:
        """False if an upper bound on weights[0] x bulge flux + weights[1] x disc flux in
        ``band`` is below ``limit``: the (z, age) table bounds first, then the tight bound of
        the brighter-bounded component, then both tight bounds."""
        def tight(i: int) -> float:
            return weights[i] * self._tight(g, i, band, memo)[1]

        if band not in BOUND_BANDS:
            return tight(0) + tight(1) >= limit
        table = self.table_bounds(g, band, dust)
        table = (weights[0] * table[0], weights[1] * table[1])
        if table[0] + table[1] < limit:
            return False
        first = int(table[1] > table[0])
        if tight(first) + table[1 - first] < limit:
            return False
        return tight(first) + tight(1 - first) >= limit

    def logm_min(self, z: float) -> float:
        """The proposal mass floor at z of the most permissive requested programme."""
        return float(np.interp(z, *self._logm_min))

    def draw_accepted(self, rng: np.random.Generator):
        """Draw galaxies until one is a target of a requested programme; returns the galaxy."""
        return self.draw_target(rng).galaxy

    def draw_target(self, rng: np.random.Generator) -> Target:
        """A target of one requested programme, chosen in proportion to DESI's target
        densities (``targeting.DESI_DENSITY``); then galaxies are drawn in its redshift window
        until one passes its cuts (rejection sampling: flux bounds, exact photometry, the cuts
        with optimistic fibre fluxes, then the Legacy Survey fibre fluxes and the exact cuts)."""
        from galclip.sim.population import draw_galaxy

        prog = self.programmes[int(np.searchsorted(self._share_cdf, rng.random(), side="right"))
                               if len(self.programmes) > 1 else 0]
        floor, redshifts = self._plan[prog.name]
        count = self.draws[prog.name]
        for _ in range(MAX_DRAWS):
            g = draw_galaxy(rng, lambda z: float(np.interp(z, *floor)), redshifts)
            count[0] += 1
            if not self.may_pass(g, programme=prog.name):
                continue
            target = self._select(g, prog.name)
            if target is not None:
                count[1] += 1
                return target
        raise RuntimeError(f"no galaxy passed the {prog.name} selection in {MAX_DRAWS} draws")

    def sky_density(self, programme: str) -> float:
        """The simulated population's own density of ``programme`` targets (deg^-2) within its
        redshift window, estimated from the draws so far: each draw stands for an equal share
        of the galaxies above the mass floor (dV/dz is per steradian)."""
        draws, accepted = self.draws[programme]
        cdf = self._plan[programme][1][0]
        return float(cdf[-1] * accepted / max(draws, 1) * (np.pi / 180.0) ** 2)

    def _select(self, g, programme: str) -> Target | None:
        from galclip.sim import targeting as T
        from galclip.sim.imaging import legacy_fibre_fractions

        phot = {"bulge": self.engine.photometry(g.bulge, g.redshift),
                "disc": self.engine.photometry(g.disc, g.redshift)}
        total = {b: phot["bulge"][b] + phot["disc"][b] for b in phot["bulge"]}
        mag_r = float(C.nanomaggy_to_mag(total["r"]))
        if not (self.cfg.mag_bright < mag_r and (self.cfg.mag_limit is None or mag_r < self.cfg.mag_limit)):
            return None
        # optimistic fibre fluxes (upper bounds on the fibre fractions, fibre-total faint):
        # every cut is monotone in them, so a galaxy failing here fails the exact cuts too
        loose = T.photometry_dict(total, T.fibre_fluxes(phot, self._fibre_bound.fractions(g)))
        loose["rfibtot"] = loose["zfibtot"] = 1e-3
        if programme not in T.classes(*(int(b) for b in T.target_bits(loose))):
            return None
        fib = T.fibre_fluxes(phot, legacy_fibre_fractions(g))
        desi, bgs = (int(b) for b in T.target_bits(T.photometry_dict(total, fib)))
        if programme not in T.classes(desi, bgs):
            return None
        return Target(g, phot, fib, desi, bgs, programme)

    def simulate(self, index: int, keep_truth_arrays: bool = False) -> dict[str, Any]:
        """One row of the dataset (and, if asked, the noiseless spectrum and image)."""
        from galclip.sim import imaging, observing
        from galclip.sim import instrument as I

        rng = np.random.default_rng([self.cfg.seed, index])
        t = time.perf_counter(), time.process_time()
        target = self.draw_target(rng)
        g = target.galaxy
        obs = imaging.draw_observing(rng, target.programme, self.cfg.deep_fraction)
        t = self._tick("population (draws + target selection)", t)
        sb = self.engine.synthesize(g.bulge, g.redshift)
        sd = self.engine.synthesize(g.disc, g.redshift)
        t = self._tick("spectrum synthesis (bagpipes)", t)
        bulge, disc, companion = imaging.galaxy_components(g, rng)
        q_comp = g.features["companion_mass_ratio"]
        total = {b: sb["phot"][b] + sd["phot"][b] for b in sb["phot"]}
        fluxes = {"bulge": sb["phot"], "disc": sd["phot"],
                  "companion": {b: q_comp * sd["phot"][b] * total["r"] / sd["phot"]["r"]
                                for b in C.BANDS}}
        profiles = {"bulge": bulge, "disc": disc}
        if companion is not None:
            profiles["companion"] = companion
        seds = {"bulge": sb["spectrum"], "disc": sd["spectrum"]}
        if companion is not None:  # the companion: the disc's SED at its own flux
            seds["companion"] = fluxes["companion"]["r"] / sd["phot"]["r"] * sd["spectrum"]
        light = observing.fibre_light(profiles, seds, obs.fiber_fwhm)
        ff, fibre, psf_fraction = light["r_fractions"], light["fibre"], light["psf_to_fiber"]
        t = self._tick("fibre fractions (GalSim)", t)
        wave = C.wavelength_grid()
        fibre = I.gaussian_blur_pixels(fibre, I.resolution_sigma(wave) / C.WAVE_STEP)
        spec = observing.observe(fibre, obs.exposure, light["psf_curve"], rng)
        flux, ivar = spec["flux"], spec["ivar"]
        t = self._tick("spectrograph (resolution + noise)", t)
        cut = imaging.render_cutout(g, fluxes, obs, rng, (bulge, disc, companion))
        t = self._tick("image rendering (GalSim + noise)", t)
        model = imaging.galaxy_model((bulge, disc), fluxes, obs)
        phot = self._catalogue_photometry(index, model, cut["ivar"], sb, sd)
        t = self._tick("catalogue photometry (model flux + noise)", t)
        row = self._row(index, g, sb, sd, ff, obs, flux, ivar, cut)
        row.update(phot)
        row.update(self._target_columns(target))
        row["psf_to_fiber"] = psf_fraction
        if keep_truth_arrays:
            row["_noiseless_spectrum"] = spec["expected"]
            row["_fibre_spectrum"] = fibre.astype(np.float32)
            row["_sky_residual"] = spec["sky_residual"].astype(np.float32)
            row["_calibration"] = spec["calibration"].astype(np.float32)
            row["_noiseless_image"] = cut["noiseless"]
            row["_image_ivar"] = cut["ivar"]
            row["_galaxy_model"] = model
            row["_fibre_fractions"] = ff
            row["_contaminant_flux"] = cut["contaminant_flux"]
            row["_companion_flux"] = np.array([fluxes["companion"][b] if companion else 0.0
                                               for b in C.BANDS])
        return row

    def _catalogue_photometry(self, index: int, model: np.ndarray, pixel_ivar: np.ndarray,
                              sb: dict, sd: dict) -> dict[str, float]:
        """The measured ``flux_{g,r,z}`` and their ``flux_ivar_{g,r,z}`` (nanomaggies, and
        nanomaggy^-2) as a Legacy Survey catalogue gives them: the true total flux plus Gaussian
        noise of the model-fit flux's variance on this cutout (``imaging.model_flux_ivar``),
        drawn from the row's photometry generator (module docstring)."""
        from galclip.sim.imaging import model_flux_ivar

        true = np.array([sb["phot"][b] + sd["phot"][b] for b in C.BANDS])
        flux_ivar = model_flux_ivar(model, true, pixel_ivar)
        rng = np.random.default_rng([self.cfg.seed, index, PHOTOMETRY_STREAM])
        measured = true + rng.normal(size=len(C.BANDS)) / np.sqrt(flux_ivar)
        row = {f"flux_{b}": float(measured[k]) for k, b in enumerate(C.BANDS)}
        row.update({f"flux_ivar_{b}": float(flux_ivar[k]) for k, b in enumerate(C.BANDS)})
        return row

    @staticmethod
    def _target_columns(target: Target) -> dict[str, Any]:
        """W1, W2, the Legacy Survey fibre fluxes and the DESI target bits of a row."""
        total = {b: target.phot["bulge"][b] + target.phot["disc"][b] for b in ("w1", "w2")}
        row = {"flux_w1": total["w1"], "flux_w2": total["w2"]}
        row.update({f"ls_fiberflux_{b}": target.ls_fibre[b] for b in C.BANDS})
        row.update({"desi_target": np.int64(target.desi_target),
                    "bgs_target": np.int64(target.bgs_target), "programme": target.programme})
        return row

    def _row(self, index, g, sb, sd, ff, obs, flux, ivar, cut) -> dict[str, Any]:
        from galclip.sim.sed import LINES

        mass_b, mass_d = 10 ** sb["log_mstar"], 10 ** sd["log_mstar"]
        mstar = mass_b + mass_d
        sfr = max(sb["sfr"] + sd["sfr"], 1e-5)
        formed_b, formed_d = sb["mass_formed"], sd["mass_formed"]
        r_b, r_d = sb["phot"]["r"], sd["phot"]["r"]
        row = {
            "object_id": object_id(self.cfg.seed, index), "ra": g.ra, "dec": g.dec,
            "redshift": np.float32(g.redshift),
            "image": cut["image"], "spectrum_flux": flux, "spectrum_ivar": ivar,
            "log_mstar": np.log10(mstar), "log_sfr": np.log10(sfr),
            "log_ssfr": np.log10(sfr) - np.log10(mstar),
            "logz_mw": np.log10((sb["z_mw"] * mass_b + sd["z_mw"] * mass_d) / mstar),
            "tage_mw": (sb["age_mw_gyr"] * formed_b + sd["age_mw_gyr"] * formed_d) / (formed_b + formed_d),
            "av": (g.bulge.av * r_b + g.disc.av * r_d) / (r_b + r_d),
            "quenched": np.int8(g.quenched),
        }
        for b in C.BANDS:
            row[f"flux_{b}_true"] = sb["phot"][b] + sd["phot"][b]
        row["fiber_flux_r"] = ff["bulge"] * r_b + ff["disc"] * r_d
        row["mag_r"] = float(C.nanomaggy_to_mag(row["flux_r_true"]))   # the selection's r
        row["sdss_g"] = float(C.nanomaggy_to_mag(sb["phot"]["sdss_g"] + sd["phot"]["sdss_g"]))
        row["sdss_r"] = float(C.nanomaggy_to_mag(sb["phot"]["sdss_r"] + sd["phot"]["sdss_r"]))
        row.update({
            "bulge_to_total": r_b / (r_b + r_d), "bulge_to_total_mass": mass_b / mstar,
            "r_half_bulge_arcsec": g.r_half_bulge, "r_half_disc_arcsec": g.r_half_disc,
            "sersic_bulge": g.sersic_bulge, "axis_ratio": g.q_disc, "bulge_axis_ratio": g.q_bulge,
            "inclination_deg": g.inclination_deg, "position_angle": g.position_angle,
            "veldisp_bulge": g.bulge.veldisp, "veldisp_disc": g.disc.veldisp,
            "logu": np.nan if g.disc.logu is None else g.disc.logu,
            "gas_logz": np.log10(g.disc.gas_metallicity),
            "fiber_fwhm": obs.fiber_fwhm, "n_neighbours": np.int16(cut["n_contaminants"]),
            "exptime": obs.exposure.exptime_s, "efftime": obs.exposure.efftime_s,
            "sky_factor": obs.exposure.sky_factor,
        })
        for k in LINES:
            row[f"line_{k}"] = sb["lines"][k] + sd["lines"][k]
        for i, b in enumerate(C.BANDS):
            row[f"psf_fwhm_{b}"] = obs.fwhm[b]
            row[f"image_sigma_{b}"] = float(cut["sky_sigma"][i])
        if self.cfg.image_ivar:
            row["image_ivar"] = cut["ivar"]
        row.update({k: np.int8(v) for k, v in g.morph.items()})
        return row


def _fibre_bound():
    """The Legacy Survey fibre-fraction bound, its GalSim tables cached like the flux bound's."""
    from galclip.sim.fibrebound import LegacyFibreBound, fraction_tables, table_key

    return LegacyFibreBound(*_cached(table_key(), fraction_tables))


def _cached(name: str, compute):
    """Arrays computed from bagpipes' grids, cached under ``$XDG_CACHE_HOME/galclip`` (keyed by
    the bagpipes version) so that each worker does not recompute them; recomputed if unreadable."""
    from importlib.metadata import version

    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "galclip"
    path = root / f"{name}-bagpipes{version('bagpipes')}.npz"
    try:
        with np.load(path) as f:
            return tuple(f[f"a{i}"] for i in range(len(f.files)))
    except (OSError, ValueError, KeyError):
        pass
    arrays = compute()
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        np.savez(tmp, **{f"a{i}": a for i, a in enumerate(arrays)})
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: compute again next time
    return arrays


# ----------------------------------------------------------------------------- orchestration
_WORKER: GalaxySimulator | None = None


def die_with_parent(parent: int) -> None:
    """Make this worker process end when ``parent`` does (a ``kill -9`` of ``galclip simulate``
    must not leave workers writing shards): Linux PR_SET_PDEATHSIG, plus a watcher thread that
    checks the parent pid each second where prctl is unavailable."""
    import ctypes
    import signal
    import threading

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="galclip-parent-watch").start()


def _init_worker(cfg_dict: dict, parent: int | None = None) -> None:
    """Build this process's simulator; reuse one whose rows would be identical (rows do not
    depend on n or shard_size)."""
    global _WORKER
    import warnings

    if parent is not None:
        die_with_parent(parent)

    warnings.filterwarnings("ignore")
    cfg = SimConfig(**cfg_dict)
    same = ("seed", "programmes", "mag_limit", "mag_bright", "image_ivar", "deep_fraction")
    if _WORKER is None or any(getattr(_WORKER.cfg, k) != getattr(cfg, k) for k in same):
        _WORKER = GalaxySimulator(cfg)
    _WORKER.cfg = cfg


def _shard_rows(cfg: SimConfig, shard: int) -> range:
    return range(shard * cfg.shard_size, min((shard + 1) * cfg.shard_size, cfg.n_rows))


def _make_shard(args: tuple[str, int]) -> dict[str, Any]:
    from galclip.data.format import shard_name, write_shard

    out, shard = args
    index = _shard_rows(_WORKER.cfg, shard)
    rows = [_WORKER.simulate(i) for i in index]
    columns = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}
    split = _WORKER.cfg.split_labels(index)
    if split is not None:
        columns["split"] = split
    return write_shard(Path(out) / shard_name(shard), columns)


def _state(out: Path, cfg: SimConfig):
    """The run's resume state; a folder holding a simulation with other settings is refused."""
    from galclip.resume import ResumeState

    return ResumeState.open(out / STATE_FILE, "galclip simulate", {"config": asdict(cfg)},
                            hint="use another --out folder")


def _prepare_output(out: Path, cfg: SimConfig) -> dict[int, dict]:
    """Check the output folder; return the finished shards of an interrupted identical run."""
    from galclip.data.format import shard_name
    from galclip.storage import MANIFEST, remove_stale_temporaries, shard_entry

    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not (out / STATE_FILE).exists():
        what = "a galclip dataset from another command" if (out / MANIFEST).exists() else \
            "a folder that is not a simulated galclip dataset"
        raise FileExistsError(f"{out}: is {what}; choose an empty or new --out folder")
    state = _state(out, cfg)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"{out}: cannot write there ({e.strerror})") from e
    state.save()
    remove_stale_temporaries(out)
    done = {}
    for shard in range(-(-cfg.n_rows // cfg.shard_size)):
        p = out / shard_name(shard)
        if p.exists():
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                if pq.read_metadata(p).num_rows == len(_shard_rows(cfg, shard)):
                    done[shard] = shard_entry(p)
                    continue
            except (OSError, pa.ArrowException):  # a truncated or corrupt shard is redone
                pass
            p.unlink()
    return done


def simulate_survey(out: str | Path, cfg: SimConfig, workers: int | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """Simulate ``cfg.n`` galaxies (and ``cfg.reference`` look-up-only ones after them) into the
    dataset folder ``out``; returns the manifest."""
    from tqdm import tqdm

    from galclip.data.format import (
        MANIFEST,
        Provenance,
        read_manifest,
        remove_stale_temporaries,
        write_manifest,
    )

    cfg.validate()
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out = Path(out)
    if (out / MANIFEST).exists() and (out / STATE_FILE).exists():
        state = _state(out, cfg)  # the manifest is written last: the same run, complete
        if not state.complete:    # (killed between the manifest and this mark)
            state.mark_complete({"n_rows": cfg.n_rows})
        remove_stale_temporaries(out)
        return read_manifest(out)
    done = _prepare_output(out, cfg)
    todo = [s for s in range(-(-cfg.n_rows // cfg.shard_size)) if s not in done]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    t0 = time.time()
    bar = tqdm(total=cfg.n_rows, initial=sum(d["n_rows"] for d in done.values()), unit="gal",
               desc="simulate", disable=not progress, smoothing=0.1)
    try:
        for entry in _run_shards(out, cfg, todo, workers):
            done[int(entry["file"][5:10])] = entry
            bar.update(entry["n_rows"])
    finally:
        bar.close()
    shards = [done[s] for s in sorted(done)]
    prov = Provenance(command=f"galclip simulate --n {cfg.n} --out {out} --seed {cfg.seed} "
                              f"--programmes {cfg.programmes}"
                              + (f" --reference {cfg.reference}" if cfg.reference else ""),
                      config=asdict(cfg), seed=cfg.seed)
    info = _simulator_info(time.time() - t0, workers)
    info["programmes"] = programme_shares(out, shards, cfg)
    if cfg.reference:
        info["reference_rows"] = {"first": cfg.n, "n": cfg.reference, "split": "reference"}
    manifest = write_manifest(out, shards, prov, extra={"simulator": info})
    _state(out, cfg).mark_complete({"n_rows": cfg.n_rows})
    return manifest


def programme_shares(out: Path, shards: list[dict], cfg: SimConfig) -> dict[str, Any]:
    """What the manifest records of the programmes: the requested ones with their redshift
    windows, the rows and share of each (by the ``programme`` column), the share of rows in
    each target class (a galaxy may be in several), and DESI's target densities for scale."""
    import pyarrow.parquet as pq

    from galclip.sim import targeting as T

    requested = T.parse_programmes(cfg.programmes)
    cols = [pq.read_table(out / s["file"], columns=["programme", "desi_target", "bgs_target"])
            for s in shards]
    prog = np.concatenate([c.column("programme").to_numpy(zero_copy_only=False) for c in cols])
    desi = np.concatenate([c.column("desi_target").to_numpy() for c in cols])
    bgs = np.concatenate([c.column("bgs_target").to_numpy() for c in cols])
    n = len(prog)
    member = {p: [p in T.classes(int(d), int(b)) for d, b in zip(desi, bgs, strict=True)]
              for p in T.PROGRAMMES}
    return {"requested": list(requested),
            "redshift_windows": {p: [T.PROGRAMMES[p].z_min, T.PROGRAMMES[p].z_max] for p in requested},
            "n": {p: int(np.sum(prog == p)) for p in requested},
            "share": {p: float(np.mean(prog == p)) for p in requested},
            "class_share": {p: float(np.mean(member[p])) for p in T.PROGRAMMES},
            "desi_density_deg2": {p: T.DESI_DENSITY[p] for p in requested},
            "selection": "desitarget DR9 main-survey cuts (south), docs/simulate.md"} if n else {}


def _run_shards(out: Path, cfg: SimConfig, todo: list[int], workers: int):
    if not todo:
        return
    if workers == 1:
        _init_worker(asdict(cfg))
        for s in todo:
            yield _make_shard((str(out), s))
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # safe even when the parent has imported torch
    with ctx.Pool(workers, initializer=_init_worker, initargs=(asdict(cfg), os.getpid())) as pool:
        yield from pool.imap_unordered(_make_shard, [(str(out), s) for s in todo])


def _simulator_info(seconds: float, workers: int) -> dict[str, Any]:
    return {"description": "galclip survey simulator: bagpipes BC03-MILES + Cloudy spectra, "
                           "GalSim bulge+disc images, DESI observing conditions, calibration, "
                           "sky residuals and noise, Legacy Survey DR9 noise",
            "wall_seconds_last_run": round(seconds, 1), "workers": workers,
            "truth_columns": "see README: simulated dataset columns"}
