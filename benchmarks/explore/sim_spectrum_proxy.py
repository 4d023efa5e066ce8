"""A cheap proxy for the demo's spectrum zero-shot figure on simulated datasets.

k-NN (k = 8, 5-fold cross-validated) redshift and log_mstar R^2 from 16 PCA components of the
spectra, ivar-weighted 8-pixel means, each normalised by its median |flux|; used to compare
datasets of the same galaxies simulated by two versions of the simulator (e.g. before and after
the instrument effects) without training a model.

Usage:  python benchmarks/explore/sim_spectrum_proxy.py DATASET [DATASET ...]
"""
import sys
import warnings

import numpy as np
from sklearn.decomposition import PCA
from sklearn.metrics import r2_score
from sklearn.model_selection import cross_val_predict
from sklearn.neighbors import KNeighborsRegressor

from galclip.data import open_dataset

warnings.filterwarnings("ignore")
for path in sys.argv[1:]:
    t = open_dataset(path).read_columns(["spectrum_flux", "spectrum_ivar", "redshift", "log_mstar"])
    f, iv = t["spectrum_flux"].astype(float), t["spectrum_ivar"].astype(float)
    box = np.ones(8)
    w = np.array([np.convolve(i, box, "same") for i in iv]) + 1e-12
    s = np.array([np.convolve(a * i, box, "same") for a, i in zip(f, iv, strict=True)]) / w
    s = s[:, ::8]
    s /= np.median(np.abs(s), axis=1, keepdims=True) + 1e-9
    x = PCA(16, random_state=0).fit_transform(np.clip(s, -20, 20))
    out = []
    for k in ("redshift", "log_mstar"):
        pred = cross_val_predict(KNeighborsRegressor(8), x, t[k], cv=5)
        out.append(f"{k} R2 {r2_score(t[k], pred):.3f}")
    print(path, len(f), *out)
