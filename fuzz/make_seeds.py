"""Seed corpus for the fuzz targets (small files from numpy, nibabel, tifffile, Pillow).

    venv/bin/python make_seeds.py      # needs numpy nibabel tifffile pillow
"""
import gzip
import io
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile
from PIL import Image

here = Path(__file__).parent
data = here.parent / "crates/segloss-io/tests/data"
c = {t: here / "corpus" / t for t in ["npy", "png", "tiff", "nifti"]}
for f in data.iterdir():
    ext = {".npy": "npy", ".png": "png", ".tif": "tiff", ".nii": "nifti", ".gz": "nifti"}.get(f.suffix)
    if ext:
        shutil.copy(f, c[ext] / f.name)

a = np.arange(24).reshape(2, 3, 4)
for dt in ["<u1", ">u8", "<i8", ">f4", "<f8", "<c8"]:
    np.save(c["npy"] / f"s_{dt[1:]}_{dt[0] == '<'}.npy", a.astype(dt))
np.save(c["npy"] / "s_empty.npy", np.zeros((0, 3), "<f4"))
np.save(c["npy"] / "s_scalar.npy", np.float64(2.5))
np.save(c["npy"] / "s_fortran.npy", np.asfortranarray(a.astype("<i2")))

img = Image.fromarray((np.arange(64).reshape(8, 8) * 3).astype("u1"))
img.save(c["png"] / "s_interlaced.png", interlace=1)
img.save(c["png"] / "s_plain.png")
Image.fromarray(np.arange(64).reshape(8, 8).astype("u1") % 4, "L").convert("1").save(c["png"] / "s_1bit.png")
Image.fromarray(np.dstack([a[0].astype("u1")] * 4)).save(c["png"] / "s_rgba.png")
Image.fromarray(a[0].astype("u1")).convert("LA").save(c["png"] / "s_la.png")

tifffile.imwrite(c["tiff"] / "s_f8.tif", a[0].astype("f8"), photometric="minisblack")
tifffile.imwrite(c["tiff"] / "s_u4_tiled.tif", np.zeros((32, 32), "u4"), tile=(16, 16))
tifffile.imwrite(c["tiff"] / "s_f2.tif", a[0].astype("f2"))

aff = np.diag([0.5, 0.6, 0.7, 1.0])
nib.save(nib.Nifti1Image(a.astype("f4"), aff), c["nifti"] / "s_f4.nii")
nib.save(nib.Nifti1Image(a.astype("i8"), aff, dtype="int64"), c["nifti"] / "s_i8.nii.gz")
nib.save(nib.Nifti2Image(a.astype("u2"), aff), c["nifti"] / "s_n2_u2.nii.gz")
h = nib.Nifti1Image(a.astype(">i2"), aff)
nib.save(h, c["nifti"] / "s_be_i2.nii")
