"""Comparing stored result units byte for byte (shared by the resume and Dask tests)."""
import h5py
import numpy as np


def h5_content(path, attrs=True):
    """Every dataset of an HDF5 file as (dtype, shape, bytes), and its attributes' bytes."""
    items = {}
    with h5py.File(path, "r") as f:
        if attrs:
            items["attrs"] = {k: np.asarray(v).tobytes() for k, v in f.attrs.items()}

        def visit(name, node):
            if isinstance(node, h5py.Dataset):
                v = node[()]
                items[name] = (v.dtype.str, v.shape, v.tobytes())
        f.visititems(visit)
    return items
