"""galclip: images and spectra of galaxies in one embedding space (AstroCLIP and beyond)."""
__version__ = "0.1.0"


def load_model(path, device="cpu"):
    """Rebuild a trained GalaxyCLIP (encoders included) from one checkpoint file, in eval mode.

    ``model.encode_image(images)`` and ``model.encode_spectrum(flux, ivar)`` then take physical
    inputs (nanomaggy cutouts; DESI-grid flux and ivar). Torch is imported only when called.
    """
    from galclip.models.clip import load_model as _load

    return _load(path, device=device)


def predict(catalog, reference, out=None, **options):
    """Predict properties of every galaxy of an embedding catalog from a labelled reference
    catalog (k-NN, with split-conformal 68 %/95 % intervals and a redshift density); see
    ``galclip.eval.predict.predict`` for the options. Returns a ``Prediction`` (metadata, and
    the Arrow table when ``out`` is None)."""
    from galclip.eval.predict import predict as _predict

    return _predict(catalog, reference, out, **options)
