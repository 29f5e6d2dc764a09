"""Decode Label Studio brush RLE with ``label_studio_sdk``'s own decoder (``label_studio_sdk.converter.brush.decode_rle``,
what Label Studio's exporters use); run by tests/lskit.py with the Python of the Label Studio virtualenv.

    python ls_driver.py REGIONS.json OUT.npz

REGIONS.json: a list of ``{"rle": [...], "height": H, "width": W}``; OUT.npz: ``m0``, ``m1``, ... (H, W) bool masks
(the RGBA image's alpha channel > 0), and ``rgba_ok``: whether every pixel had its 4 channels equal.
"""

import json
import sys

import numpy as np
from label_studio_sdk.converter.brush import decode_rle


def main() -> None:
    regions = json.load(open(sys.argv[1]))
    out, ok = {}, True
    for i, r in enumerate(regions):
        rgba = np.reshape(decode_rle(r["rle"]), [r["height"], r["width"], 4])
        ok &= bool((rgba == rgba[:, :, :1]).all())
        out[f"m{i}"] = rgba[:, :, 3] > 0
    np.savez(sys.argv[2], rgba_ok=ok, **out)


if __name__ == "__main__":
    main()
