"""Makes the reference files in this folder with the tools people use (numpy, nibabel,
tifffile, Pillow), so that tests/reference.rs checks segloss-io against them.

    python -m venv venv && venv/bin/pip install numpy nibabel tifffile pillow
    venv/bin/python make_reference.py

Every array is a simple function of its index so the Rust test can rebuild it.
"""
import numpy as np
import nibabel as nib
import tifffile
from PIL import Image


def idx(shape, dtype):
    """a[i, j, k] = 100 i + 10 j + k (mod the dtype's range)."""
    g = np.indices(shape)
    w = [10 ** (len(shape) - 1 - d) for d in range(len(shape))]
    return sum(gi * wi for gi, wi in zip(g, w)).astype(dtype)


# .npy: Fortran order + big endian, half floats, bool, format versions 2.0 and 3.0.
np.save("np_fortran_be_i4.npy", np.asfortranarray(idx((3, 4, 2), ">i4")))
np.save("np_f2.npy", (idx((2, 3), "f4") / 4).astype("<f2"))
np.save("np_bool.npy", idx((2, 3), "i4") % 2 == 1)
with open("np_v2_u2.npy", "wb") as f:
    np.lib.format.write_array(f, idx((2, 3), "<u2"), version=(2, 0))
with open("np_v3_f8.npy", "wb") as f:
    np.lib.format.write_array(f, np.asfortranarray(idx((2, 3), ">f8")), version=(3, 0))

# NIfTI.
aff = np.array([[-0.8, 0, 0, 10], [0, 0.9, 0, -20], [0, 0, 2.5, 30], [0, 0, 0, 1]])
img = nib.Nifti1Image(idx((4, 3, 2), "u1"), aff)
img.set_qform(aff, code=1)
img.set_sform(aff, code=2)
img.header.set_xyzt_units("mm", "sec")
nib.save(img, "nib_labels_u1.nii.gz")
img = nib.Nifti1Image(idx((4, 3, 2), "i2"), aff)
img.header.set_data_dtype("i2")
img.header.set_slope_inter(2.0, 1.0)
nib.save(img, "nib_scaled_i2.nii")
nib.save(nib.Nifti2Image(idx((4, 3, 2), "f4"), aff), "nib2_f4.nii")
nib.save(nib.Nifti1Image(idx((4, 3, 2, 1), "f8"), aff), "nib_4d_singleton_f8.nii.gz")
nib.save(nib.Nifti1Image(idx((2, 2, 2, 2), "u1"), aff), "nib_4d_u1.nii.gz")

# TIFF.
# Without photometric="minisblack", tifffile would store a 3-page stack as planar RGB.
tifffile.imwrite("tf_stack_u2.tif", idx((3, 4, 5), "u2"), photometric="minisblack")
tifffile.imwrite("tf_f4.tif", idx((4, 5), "f4") / 2)
tifffile.imwrite("tf_zlib_u1.tif", idx((4, 5), "u1"), compression="zlib")
tifffile.imwrite("tf_big_i2.tif", idx((2, 4, 5), "i2") - 50, bigtiff=True, photometric="minisblack")
tifffile.imwrite("tf_rgb.tif", idx((4, 5, 3), "u1"), photometric="rgb")

# PNG.
Image.fromarray(idx((4, 5), "u1")).save("pil_l.png")
Image.fromarray((idx((4, 5), "u2") * 100).astype("<u2")).save("pil_i16.png")
Image.fromarray(idx((4, 5), "u1") % 2 == 1).save("pil_1bit.png")
Image.fromarray(idx((4, 5, 3), "u1")).save("pil_rgb.png")
Image.fromarray(idx((4, 5), "u1") % 3).convert("P").save("pil_p.png")
