"""The NumPy API against the committed oracle fixtures (tools/reference/gen_maps.py: scipy, edt and the
U-Net recipe), against scipy / edt directly on random inputs (skipped where they are not installed),
and its input handling: dtypes, memory orders, spacing, and the error messages."""
import numpy as np
import pytest

import segloss
from conftest import load_npz, maps_manifest

CASES = maps_manifest()


def cases(kind):
    return [pytest.param(c, id=c["name"]) for c in CASES if c["kind"] == kind]


@pytest.mark.parametrize("case", cases("edt"))
def test_edt_fixtures(case):
    z = load_npz(case["file"])
    got = segloss.edt(z["mask"], case["spacing"])
    assert got.dtype == np.float64 and got.shape == z["mask"].shape
    np.testing.assert_allclose(got, z["expected"], rtol=1e-12, atol=1e-12)
    got32 = segloss.edt(z["mask"], case["spacing"], dtype=np.float32)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, z["expected"], rtol=1e-6)
    sq = segloss.edt(z["mask"], case["spacing"], squared=True)
    np.testing.assert_allclose(sq, z["expected"] ** 2, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", cases("labels"))
def test_multilabel_edt_fixtures(case):
    z = load_npz(case["file"])
    got = segloss.multilabel_edt(z["labels"], case["spacing"])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, z["expected"], rtol=1e-6, atol=1e-6)
    got64 = segloss.multilabel_edt(z["labels"], case["spacing"], dtype=np.float64)
    # The oracle is edt.edt's float32 output.
    np.testing.assert_allclose(got64, z["expected"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", cases("cc"))
def test_connected_components_fixtures(case):
    z = load_npz(case["file"])
    labels, k = segloss.connected_components(z["mask"], connectivity=case["connectivity"])
    assert labels.dtype == np.uint32
    assert k == case["count"]
    np.testing.assert_array_equal(labels, z["expected"])


@pytest.mark.parametrize("case", cases("distmap"))
def test_signed_distance_fixtures(case):
    z = load_npz(case["file"])
    got = segloss.signed_distance(z["mask"], case["spacing"])
    np.testing.assert_allclose(got, z["signed"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", cases("weightmap_binary") + cases("weightmap_instances"))
def test_unet_weight_map_fixtures(case):
    z = load_npz(case["file"])
    src = z["mask"] if "mask" in z else z["instances"]
    got = segloss.unet_weight_map(
        src, w0=case["w0"], sigma=case["sigma"], class_weights=case["class_weight"], spacing=case["spacing"],
        instances=case["kind"] == "weightmap_instances", connectivity=case.get("connectivity", "full"),
        dtype=np.float64,
    )
    # The core's stated tolerance: 5e-5 from the exact definition.
    np.testing.assert_allclose(got, z["expected"], rtol=0, atol=1e-4)


def test_weight_map_auto_instances():
    # Two touching cells with different labels: instances; the same labels as a 0/1 mask: one cell.
    cells = np.array([[5, 5, 9, 9, 0, 0]], np.uint16)
    as_instances = segloss.unet_weight_map(cells, class_weights="none")
    assert as_instances[0, 4] > 1.0
    mask = (cells > 0).astype(np.uint8)
    np.testing.assert_array_equal(segloss.unet_weight_map(mask, class_weights="none"), np.ones((1, 6), np.float32))
    np.testing.assert_array_equal(segloss.unet_weight_map(cells, class_weights="none", instances=False),
                                  np.ones((1, 6), np.float32))


DTYPES = [bool, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64,
          np.float16, np.float32, np.float64, ">i4", ">f8"]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_any_dtype(dtype, rng):
    mask = rng.random((13, 17)) > 0.6
    ref = segloss.edt(mask)
    np.testing.assert_array_equal(segloss.edt(mask.astype(dtype)), ref)
    np.testing.assert_array_equal(segloss.signed_distance(mask.astype(dtype)), segloss.signed_distance(mask))
    lab, k = segloss.connected_components(mask.astype(dtype))
    lab0, k0 = segloss.connected_components(mask)
    assert k == k0 and np.array_equal(lab, lab0)
    np.testing.assert_array_equal(segloss.unet_weight_map(mask.astype(dtype), instances=False),
                                  segloss.unet_weight_map(mask))


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_orders_and_views(ndim, rng):
    shape = (9, 11, 7)[:ndim]
    mask = rng.random(shape) > 0.5
    ref = segloss.edt(mask)
    np.testing.assert_array_equal(segloss.edt(np.asfortranarray(mask)), ref)
    # A strided, reversed view.
    big = rng.random(tuple(2 * n for n in shape)) > 0.5
    view = big[tuple(slice(None, None, -2) for _ in shape)]
    np.testing.assert_array_equal(segloss.edt(view), segloss.edt(np.ascontiguousarray(view)))
    labels = rng.integers(0, 4, shape)
    np.testing.assert_array_equal(segloss.multilabel_edt(labels.T), segloss.multilabel_edt(np.ascontiguousarray(labels.T)))


def test_spacing_forms(rng):
    mask = rng.random((10, 12)) > 0.5
    np.testing.assert_array_equal(segloss.edt(mask, 2.0), segloss.edt(mask, (2.0, 2.0)))
    np.testing.assert_array_equal(segloss.edt(mask, np.array([1.5, 0.5])), segloss.edt(mask, [1.5, 0.5]))


@pytest.mark.parametrize("ndim,spacing", [(1, (0.7,)), (2, (1.0, 1.0)), (2, (1.5, 0.6)), (3, (2.0, 1.0, 0.5))])
def test_edt_vs_scipy(ndim, spacing, rng):
    ndi = pytest.importorskip("scipy.ndimage")
    shape = (40, 23, 17)[:ndim]
    mask = rng.random(shape) > 0.3
    mask.flat[0] = False
    np.testing.assert_allclose(segloss.edt(mask, spacing), ndi.distance_transform_edt(mask, sampling=spacing),
                               rtol=1e-12, atol=1e-12)
    sd = segloss.signed_distance(mask, spacing)
    ref = ndi.distance_transform_edt(~mask, sampling=spacing) * ~mask - (
        ndi.distance_transform_edt(mask, sampling=spacing) - 1) * mask
    np.testing.assert_allclose(sd, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_connected_components_vs_scipy(ndim, rng):
    ndi = pytest.importorskip("scipy.ndimage")
    mask = rng.random((30, 25, 9)[:ndim]) > 0.55
    for conn, rank in (("face", 1), ("full", ndim)):
        ref, k = ndi.label(mask, structure=ndi.generate_binary_structure(ndim, rank))
        lab, kk = segloss.connected_components(mask, connectivity=conn)
        assert kk == k
        np.testing.assert_array_equal(lab, ref)
        lab_int, _ = segloss.connected_components(mask, connectivity=rank)
        np.testing.assert_array_equal(lab_int, ref)


@pytest.mark.parametrize("ndim,spacing", [(2, (1.0, 1.0)), (2, (0.8, 1.7)), (3, (2.0, 1.0, 1.5))])
def test_multilabel_edt_vs_edt(ndim, spacing, rng):
    edt = pytest.importorskip("edt")
    labels = rng.integers(0, 5, (31, 27, 12)[:ndim]).astype(np.uint32)
    ref = edt.edt(labels, anisotropy=spacing, black_border=False)
    np.testing.assert_allclose(segloss.multilabel_edt(labels, spacing), ref, rtol=1e-5, atol=1e-5)


def test_surface_vs_scipy(rng):
    ndi = pytest.importorskip("scipy.ndimage")
    mask = rng.random((20, 18, 9)) > 0.4
    np.testing.assert_array_equal(segloss.surface(mask), ndi.binary_erosion(mask) ^ mask)


def test_no_background_and_single_label():
    np.testing.assert_array_equal(segloss.edt(np.ones((3, 4))), np.zeros((3, 4)))
    np.testing.assert_array_equal(segloss.multilabel_edt(np.full((3, 4), 7)), np.zeros((3, 4), np.float32))
    np.testing.assert_array_equal(segloss.signed_distance(np.zeros((3, 4))), np.zeros((3, 4)))


# The CLI's one-line messages, with the argument's name in place of the file name.
@pytest.mark.parametrize("call,exc,message", [
    (lambda: segloss.edt(np.zeros((2, 2, 2, 2))), ValueError,
     "mask: array of shape [2, 2, 2, 2]: expected a 1D, 2D or 3D image"),
    (lambda: segloss.edt(np.zeros(())), ValueError, "mask: array of shape []: expected a 1D, 2D or 3D image"),
    (lambda: segloss.edt(np.zeros((0, 3))), ValueError,
     "mask: empty image of shape [0, 3]: expected at least one voxel"),
    (lambda: segloss.edt(np.array([[0.0, np.nan]])), ValueError,
     "mask: NaN at flat index 1: expected a mask (0 = background, non-zero = foreground)"),
    (lambda: segloss.edt(np.zeros((3, 3)), [1.0]), ValueError,
     "mask: spacing [1.0] has 1 values for a 2D image of shape [3, 3]"),
    (lambda: segloss.edt(np.zeros((3, 3)), [1.0, -2.0]), ValueError,
     "mask: spacing[1] = -2 is not a finite number > 0"),
    (lambda: segloss.multilabel_edt(np.array([[0.0, 1.0], [0.5, 0.0]])), ValueError,
     "labels: expected integer labels, found 0.5 at index [1, 0]"),
    (lambda: segloss.unet_weight_map(np.zeros((3, 3)), w0=-1.0), ValueError,
     "w0=-1 sigma=5: invalid parameter w0 = -1: expected a finite number >= 0"),
    (lambda: segloss.unet_weight_map(np.zeros((3, 3)), sigma=0.0), ValueError,
     "w0=10 sigma=0: invalid parameter sigma = 0: expected a finite number > 0"),
    (lambda: segloss.unet_weight_map(np.zeros((3, 3)), class_weights="auto"), ValueError,
     'unknown class weight "auto": expected balanced or none'),
    (lambda: segloss.connected_components(np.zeros((3, 3)), connectivity="edge"), ValueError,
     'unknown connectivity "edge": expected face or full'),
    (lambda: segloss.edt(np.zeros((3, 3), np.complex64)), TypeError,
     "mask: unsupported dtype complex64: expected bool, an integer or a float dtype"),
    (lambda: segloss.edt(np.array([["a"]])), TypeError,
     "mask: unsupported dtype <U1: expected bool, an integer or a float dtype"),
    (lambda: segloss.edt(np.zeros((3, 3)), dtype=np.int32), TypeError, "dtype int32: expected float32 or float64"),
])
def test_errors(call, exc, message):
    with pytest.raises(exc) as e:
        call()
    assert str(e.value) == message


def test_gil_released(rng):
    # Two threads on a large map finish; each result equals the serial one.
    import threading

    mask = rng.random((256, 256)) > 0.5
    ref = segloss.edt(mask)
    out = [None, None]

    def work(i):
        out[i] = segloss.edt(mask)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in out:
        np.testing.assert_array_equal(o, ref)
