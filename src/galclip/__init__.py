"""galclip: images and spectra of galaxies in one embedding space (AstroCLIP and beyond)."""
__version__ = "0.1.0"


def load_model(path, device="cpu"):
    """Rebuild a trained GalaxyCLIP (encoders included) from one checkpoint file, in eval mode.

    ``model.encode_image(images)`` and ``model.encode_spectrum(flux, ivar)`` then take physical
    inputs (nanomaggy cutouts; DESI-grid flux and ivar). Torch is imported only when called.
    """
    from galclip.models.clip import load_model as _load

    return _load(path, device=device)
