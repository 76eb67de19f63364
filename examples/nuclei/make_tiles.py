"""Cuts the 512×512 DSB2018 nuclei image and its instance mask into the four 256×256 quadrants of
this folder: three train (images/, masks/), the bottom-left one validates (val/images/, val/masks/).

    python make_tiles.py IMAGE.tif MASK.tif [OUT_FOLDER]

IMAGE.tif and MASK.tif are `stardist/data/images/img2d.tif` and `mask2d.tif` of the stardist 0.9.2
wheel (see README.md for their sha256). Needs numpy and tifffile. Writes uncompressed uint16 TIFFs.
"""

import sys
from pathlib import Path

import numpy as np
import tifffile

QUADRANTS = {
    "top-left": (0, 0, "train"),
    "top-right": (0, 1, "train"),
    "bottom-right": (1, 1, "train"),
    "bottom-left": (1, 0, "val"),
}


def main() -> None:
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    image = tifffile.imread(sys.argv[1])
    mask = tifffile.imread(sys.argv[2])
    out = Path(sys.argv[3]) if len(sys.argv) == 4 else Path(__file__).parent
    assert image.shape == mask.shape == (512, 512), (image.shape, mask.shape)
    for name, (qy, qx, split) in QUADRANTS.items():
        sl = (slice(256 * qy, 256 * qy + 256), slice(256 * qx, 256 * qx + 256))
        base = out / "val" if split == "val" else out
        for sub, arr in (("images", image), ("masks", mask)):
            d = base / sub
            d.mkdir(parents=True, exist_ok=True)
            tile = np.ascontiguousarray(arr[sl].astype(np.uint16))
            tifffile.imwrite(d / f"{name}.tif", tile, photometric="minisblack")


if __name__ == "__main__":
    main()
