"""A restricted unpickler for the original release's ``.npy`` latency table (a pickled dict).

Only numpy's array/scalar reconstructors and ``codecs.encode`` (used by protocol-2 pickles for byte
strings) may be constructed; anything else raises `pickle.UnpicklingError`.
"""
from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path

import numpy as np

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an untrusted pickle") from None


def load_npy_object(path: str | Path):
    """The object stored by ``np.save(path, obj)`` for a pickled (dtype object) array, restricted."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if dtype != np.dtype(object):
            raise ValueError(f"{path} holds a plain {dtype} array, not a pickled object")
        arr = RestrictedUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    return arr.item() if getattr(arr, "shape", None) == () else arr
