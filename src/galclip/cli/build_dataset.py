"""Build a galclip dataset from survey files (DESI, Legacy Survey, AstroCLIP, Multimodal Universe).

Images and spectra are cross-matched by TARGETID, else by sky position (nearest within
--match-radius arcsec). Objects left out are listed with the reason in OUT/rejects.csv; the
manifest records every input file with its sha256 and the match/reject counts. An
interrupted build resumes when the same command is run again.

Examples (the DESI files in ../shared/data/real; add --images with Legacy Survey cutouts to pair
them):
  galclip build-dataset --spectra ../shared/data/real/desi/coadd-4-80613-thru20210324.fits \\
      --redshifts ../shared/data/real/desi/redrock-4-80613-thru20210324.fits \\
      --keep-unpaired --spectype GALAXY --zwarn-zero --out runs/desi
  galclip build-dataset --spectra ../shared/data/real/desi/coadd-4-80613-thru20210324.fits \\
      ../shared/data/real/desi/coadd-special-dark-27247.fits \\
      --redshifts ../shared/data/real/desi/redrock-4-80613-thru20210324.fits \\
      ../shared/data/real/desi/redrock-special-dark-27247.fits --keep-unpaired --skip-bad \\
      --out runs/desi-2

DESI flux tables without ivar (WAVELENGTH + TARGET<TARGETID> columns, positions from the zbest
file) are read with a noise estimated from the flux, marked in the column ivar_estimated:
  galclip build-dataset --spectra ../shared/data/real/desi-andes/coadd-bgs-66003-20200315.fits \
      --redshifts ../shared/data/real/desi-andes/zbest-bgs-66003-20200315.fits --keep-unpaired \
      --out runs/andes-bgs

The same for the other surveys: --astroclip astroclip_desi.1.1.5.h5 --catalog
BGS_ANY_full.provabgs.sv3.v0.hdf5 (AstroCLIP with PROVABGS properties), or --mmu mmu/desi
mmu/legacysurvey (Multimodal Universe folders).
"""
from __future__ import annotations

import argparse

from galclip.argtypes import float_range, new_dir, positive_int
from galclip.data.build import BuildConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spectra", nargs="+", default=[], metavar="PATH",
                   help="DESI coadd-/spectra-*.fits or MMU DESI HDF5 (files or folders)")
    p.add_argument("--redshifts", nargs="+", default=[], metavar="PATH",
                   help="redrock-*.fits / zbest-*.fits for the DESI spectra")
    p.add_argument("--images", nargs="+", default=[], metavar="PATH",
                   help="Legacy Survey cutout FITS, Stein et al. HDF5 or MMU Legacy Survey HDF5")
    p.add_argument("--astroclip", nargs="+", default=[], metavar="FILE_OR_DIR",
                   help="AstroCLIP HDF5 file or Hugging Face copy (Parquet / save_to_disk)")
    p.add_argument("--mmu", nargs="+", default=[], metavar="DIR",
                   help="Multimodal Universe folders (Legacy Survey and/or DESI HDF5)")
    p.add_argument("--catalog", metavar="PROVABGS", help="PROVABGS HDF5, joined on TARGETID")
    p.add_argument("--out", required=True, type=new_dir, help="output dataset folder")
    p.add_argument("--match-radius", type=float_range(0, 3600, inclusive_lo=False),
                   default=BuildConfig.match_radius_arcsec, metavar="ARCSEC",
                   help="sky-position match radius in arcsec (default %(default)s)")
    p.add_argument("--keep-unpaired", action="store_true",
                   help="keep objects with one modality (the other is a null row)")
    p.add_argument("--skip-bad", action="store_true",
                   help="send bad rows to rejects.csv instead of stopping with an error")
    p.add_argument("--spectype", help="keep only this redrock SPECTYPE (e.g. GALAXY)")
    p.add_argument("--zwarn-zero", action="store_true", help="keep only ZWARN = 0 redshifts")
    p.add_argument("--allow-missing-redshift", action="store_true",
                   help="keep DESI spectra with no redrock/zbest entry (redshift NaN)")
    p.add_argument("--shard-size", type=positive_int, default=BuildConfig.shard_size,
                   help="rows per Parquet shard (default %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from galclip.data.build import build_dataset

    cfg = BuildConfig(out=args.out, spectra=args.spectra, redshifts=args.redshifts,
                      images=args.images, astroclip=args.astroclip, mmu=args.mmu,
                      catalog=args.catalog, match_radius_arcsec=args.match_radius,
                      keep_unpaired=args.keep_unpaired, skip_bad=args.skip_bad,
                      spectype=args.spectype, zwarn_zero=args.zwarn_zero,
                      require_redshift=not args.allow_missing_redshift,
                      shard_size=args.shard_size, overwrite=args.overwrite,
                      progress=not args.no_progress)
    r = build_dataset(cfg)["report"]
    print(f"{args.out}: {r.rows_written} rows written "
          f"(matched by TARGETID {r.matched_by_id}, by position {r.matched_by_position}, "
          f"paired inputs {r.paired_inputs}, spectrum only {r.written_spectrum_only}, "
          f"image only {r.written_image_only})\n"
          f"unmatched: {r.unmatched_spectra} spectra, {r.unmatched_images} images; "
          f"rejected: {r.rejected or 'none'} (see {args.out}/rejects.csv)")
    if r.ivar_estimated:
        print(f"{r.ivar_estimated} spectra came without ivar: their noise is estimated from the "
              f"flux (column ivar_estimated; docs/data.md)")
    return 0
