"""galclip: images and spectra of galaxies in one embedding space (AstroCLIP and beyond)."""
__version__ = "0.1.0"
