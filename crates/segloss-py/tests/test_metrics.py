"""segloss.metrics on NumPy inputs: MONAI's own test cases (ported from MONAI's repository,
tests/metrics/*.py, as named on each table), the committed MONAI fixtures
(tests/fixtures/maps/metrics.json, made by tools/reference/gen_maps.py --metrics with MONAI 1.6.1), and
the [B, C] / empty-mask conventions. No torch needed: the functions take NumPy arrays and return them."""
import json
import math
import os

import numpy as np
import pytest

from conftest import MAPS, load_npz
from segloss.metrics import (compute_average_surface_distance, compute_dice, compute_hausdorff_distance,
                             compute_iou, compute_surface_dice)


def create_spherical_seg_3d(radius=20.0, centre=(49, 49, 49), im_shape=(99, 99, 99), im_spacing=(1.0, 1.0, 1.0)):
    """MONAI's test helper (tests/metrics/test_hausdorff_distance.py): 1 inside a sphere, 0 elsewhere."""
    image = np.zeros(im_shape, dtype=np.int32)
    spy, spx, spz = np.ogrid[: im_shape[0], : im_shape[1], : im_shape[2]]
    spy = spy.astype(float) * im_spacing[0] - centre[0]
    spx = spx.astype(float) * im_spacing[1] - centre[1]
    spz = spz.astype(float) * im_spacing[2] - centre[2]
    image[(spx * spx + spy * spy + spz * spz) <= radius * radius] = 1
    return image


def batch(seg, b=2, c=3):
    """MONAI's tests: an HWD image repeated to [B, C, H, W, D]."""
    return np.broadcast_to(seg[None, None], (b, c) + seg.shape).astype(np.float32)


S = create_spherical_seg_3d
SP = (0.85, 1.2, 0.9)

# From MONAI tests/metrics/test_hausdorff_distance.py, TEST_CASES: (pred, target, spacing, percentile) and
# the Euclidean expectations (directed=True, directed=False); the chessboard/taxicab columns are
# delegated to MONAI and tested in test_torch_parity.py.
HD_CASES = [
    ((S(), S(), None, None), (0, 0)),
    ((S(radius=20, centre=(20, 20, 20)), S(radius=20, centre=(19, 19, 19)), None, None),
     (1.7320508075688772, 1.7320508075688772)),
    ((S(radius=33, centre=(19, 33, 22)), S(radius=33, centre=(20, 33, 22)), None, None), (1, 1)),
    ((S(radius=20, centre=(20, 33, 22)), S(radius=40, centre=(20, 33, 22)), None, None),
     (20.09975124224178, 20.223748416156685)),
    ((np.zeros([99, 99, 99]), S(radius=40, centre=(20, 33, 22)), None, None), (np.inf, np.inf)),
    ((S(), np.zeros([99, 99, 99]), None, None), (np.inf, np.inf)),
    ((S(radius=20, centre=(20, 33, 22)), S(radius=40, centre=(20, 33, 22)), None, 95),
     (19.924858845171276, 20.09975124224178)),
    ((S(radius=20, centre=(20, 20, 20), im_spacing=SP), S(radius=20, centre=(19, 19, 19), im_spacing=SP), SP, None),
     (2.0808651447296143, 2.2671568)),
    ((S(radius=15, centre=(20, 33, 22), im_spacing=SP), S(radius=30, centre=(20, 33, 22), im_spacing=SP), SP, None),
     (15.439640998840332, 15.62594)),
]


@pytest.mark.parametrize("directed", [True, False])
@pytest.mark.parametrize("case", range(len(HD_CASES)))
def test_hausdorff_monai_cases(case, directed):
    (seg_1, seg_2, spacing, percentile), expected = HD_CASES[case]
    out = compute_hausdorff_distance(batch(seg_1), batch(seg_2), include_background=False,
                                     percentile=percentile, directed=directed, spacing=spacing)
    assert isinstance(out, np.ndarray) and out.shape == (2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.full((2, 2), expected[0 if directed else 1]), rtol=1e-6)


def test_hausdorff_monai_nans():
    # MONAI tests/metrics/test_hausdorff_distance.py, TEST_CASES_NANS: both empty -> NaN (not counted).
    for spacing in (None, SP):
        out = compute_hausdorff_distance(np.zeros((1, 1, 99, 99, 99)), np.zeros((1, 1, 99, 99, 99)), spacing=spacing)
        assert out.shape == (1, 1) and np.isnan(out).all()


# From MONAI tests/metrics/test_surface_distance.py, TEST_CASES (Euclidean rows): (pred, target, spacing)
# and the expectations (symmetric=True, symmetric=False).
ASD_CASES = [
    ((S(), S(), None), (0, 0)),
    ((S(radius=33, centre=(19, 33, 22)), S(radius=33, centre=(20, 33, 22)), None), (0.350217, 0.3483278807706289)),
    ((S(radius=20, centre=(20, 33, 22)), S(radius=40, centre=(20, 33, 22)), None), (15.117741, 12.040033513150455)),
    ((np.zeros([99, 99, 99]), S(radius=40, centre=(20, 33, 22)), None), (np.inf, np.inf)),
    ((S(radius=33, centre=(42, 45, 52), im_spacing=SP), S(radius=33, centre=(43, 45, 52), im_spacing=SP), SP),
     (0.4951, 0.4951)),
]


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("case", range(len(ASD_CASES)))
def test_surface_distance_monai_cases(case, symmetric):
    (seg_1, seg_2, spacing), expected = ASD_CASES[case]
    out = compute_average_surface_distance(batch(seg_1), batch(seg_2), include_background=False,
                                           symmetric=symmetric, spacing=spacing)
    assert out.shape == (2, 2)
    # MONAI's test uses rtol=1e-5; its last expectation is given to 4 digits.
    rtol = 1e-4 if case == len(ASD_CASES) - 1 else 1e-5
    np.testing.assert_allclose(out, np.full((2, 2), expected[0 if symmetric else 1]), rtol=rtol)


def _one_hot(a, n):
    return np.moveaxis(np.eye(n, dtype=np.int64)[a], -1, 1)


@pytest.mark.parametrize("spacing", [None, (0.85, 1.2)])
def test_surface_dice_monai_2d(spacing):
    # MONAI tests/metrics/test_surface_dice.py: test_tolerance_euclidean_distance(_with_spacing).
    predictions = np.zeros((2, 480, 640), np.int64)
    labels = np.zeros((2, 480, 640), np.int64)
    predictions[0, :, 50:] = 1
    labels[0, :, 60:] = 1  # 10 px shift
    p, g = _one_hot(predictions, 2), _one_hot(labels, 2)
    res = {t: compute_surface_dice(p, g, [t, t], include_background=True, spacing=spacing)
           for t in (0, 1, 9, 10, 11, 12, 13)}
    for r in res.values():
        assert r.shape == (2, 2)
    assert res[0][0, 0] < res[1][0, 0] < res[9][0, 0] < res[10][0, 0]
    assert res[0][0, 1] < res[1][0, 1] < res[9][0, 1] < res[10][0, 1]
    if spacing is None:
        np.testing.assert_array_equal(res[10], res[11])
    else:
        assert res[10][0, 0] < res[11][0, 0]
        np.testing.assert_array_equal(res[12], res[13])
    expected = np.zeros((2, 2))
    expected[0, 1] = 1 - (478 + 480 + 9 * 2) / (480 * 4 + 588 * 2 + 578 * 2)
    expected[0, 0] = 1 - (478 + 480 + 9 * 2) / (480 * 4 + 48 * 2 + 58 * 2)
    expected[1, 0] = 1
    expected[1, 1] = np.nan
    np.testing.assert_allclose(res[0], expected, rtol=1e-6)


def test_surface_dice_monai_3d():
    # MONAI tests/metrics/test_surface_dice.py: test_tolerance_euclidean_distance_3d.
    predictions = np.zeros((2, 200, 110, 80), np.int64)
    labels = np.zeros((2, 200, 110, 80), np.int64)
    predictions[0, :, :, 20:] = 1
    labels[0, :, :, 30:] = 1
    p, g = _one_hot(predictions, 2), _one_hot(labels, 2)
    res0 = compute_surface_dice(p, g, [0, 0], include_background=True)
    res1 = compute_surface_dice(p, g, [1, 1], include_background=True)
    res10 = compute_surface_dice(p, g, [10, 10], include_background=True)
    res11 = compute_surface_dice(p, g, [11, 11], include_background=True)
    assert res0[0, 0] < res1[0, 0] < res10[0, 0]
    assert res0[0, 1] < res1[0, 1] < res10[0, 1]
    np.testing.assert_array_equal(res10, res11)
    expected = np.zeros((2, 2))
    expected[0, 1] = 1 - (200 * 110 + 198 * 108 + 9 * 200 * 2 + 9 * 108 * 2) / (
        200 * 110 * 4 + (58 + 48) * 200 * 2 + (58 + 48) * 108 * 2)
    expected[0, 0] = 1 - (200 * 110 + 198 * 108 + 9 * 200 * 2 + 9 * 108 * 2) / (
        200 * 110 * 4 + (28 + 18) * 200 * 2 + (28 + 18) * 108 * 2)
    expected[1, 0] = 1
    expected[1, 1] = np.nan
    np.testing.assert_allclose(res0, expected, rtol=1e-6)


def test_surface_dice_monai_all_distances():
    # MONAI tests/metrics/test_surface_dice.py: test_tolerance_all_distances (Euclidean part).
    predictions = np.zeros((1, 10, 10), np.int64)
    labels = np.zeros((1, 10, 10), np.int64)
    predictions[0, 1:4, 1] = 1
    labels[0, 5:8, 6] = 1
    p, g = _one_hot(predictions, 2), _one_hot(labels, 2)
    for thr, expected in (([0, 0], [[1 - (8 + 4) / (36 * 2 + 8 + 4), 0]]),
                          ([2.8, 5.5], [[1 - 3 / (36 * 2 + 8 + 4), 1 - (2 + 2) / (3 + 3)]]),
                          ([3, 6], [[1 - 1 / (36 * 2 + 8 + 4), 1 - 2 / (3 + 3)]])):
        np.testing.assert_array_almost_equal(compute_surface_dice(p, g, thr, include_background=True), expected)


def test_surface_dice_monai_asserts():
    # MONAI tests/metrics/test_surface_dice.py: test_asserts (the messages that apply to NumPy input too).
    p = _one_hot(np.zeros((1, 80, 80), np.int64), 2)
    with pytest.raises(ValueError, match=r"number of classes \(2\) does not match number of class thresholds \(1\)"):
        compute_surface_dice(p, p, [1], include_background=True)
    with pytest.raises(ValueError, match="All class thresholds need to be finite."):
        compute_surface_dice(p, p, [1, np.inf], include_background=True)
    with pytest.raises(ValueError, match="All class thresholds need to be >= 0."):
        compute_surface_dice(p, p, [1, -1], include_background=True)
    with pytest.raises(ValueError, match=r"y_pred and y should be one-hot encoded: \[B,C,H,W\] or \[B,C,H,W,D\]."):
        compute_surface_dice(p[0], p[0], [1, 1], include_background=True)


# From MONAI tests/metrics/test_compute_meandice.py (TEST_CASE_1, 2, 9, 11, 12) and
# tests/metrics/test_compute_meaniou.py (the same inputs, IoU expectations).
YP2 = [[[[0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]],
       [[[0.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]]]
Y2 = [[[[0.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]],
      [[[0.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]]]]
OVERLAP_CASES = [
    (dict(y_pred=[[[[1.0, 0.0], [0.0, 1.0]]]], y=[[[[1.0, 0.0], [1.0, 1.0]]]], include_background=True),
     [[0.8]], [[0.6667]]),
    (dict(y_pred=YP2, y=Y2, include_background=False), [[0.5, 0.0], [0.6667, 0.6667]], [[0.3333, 0.0], [0.5, 0.5]]),
    (dict(y=np.ones((2, 2, 3, 3)), y_pred=np.ones((2, 2, 3, 3))), [[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]),
    (dict(y=np.zeros((2, 2, 3, 3)), y_pred=np.zeros((2, 2, 3, 3)), ignore_empty=False),
     [[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]]),
    (dict(y=np.zeros((2, 2, 3, 3)), y_pred=np.ones((2, 2, 3, 3)), ignore_empty=False),
     [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]),
]


@pytest.mark.parametrize("case", range(len(OVERLAP_CASES)))
def test_dice_iou_monai_cases(case):
    kw, dice, iou = OVERLAP_CASES[case]
    kw = {k: (np.asarray(v, np.float32) if k in ("y", "y_pred") else v) for k, v in kw.items()}
    np.testing.assert_allclose(compute_dice(**kw), dice, atol=1e-4)
    np.testing.assert_allclose(compute_iou(**kw), iou, atol=1e-4)


YP3 = [[[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]],
       [[[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]]
Y3 = [[[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]],
      [[[0.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]]


def test_dice_iou_monai_nans():
    # MONAI tests/metrics/test_compute_meandice.py and test_compute_meaniou.py, TEST_CASE_3.
    p, g = np.asarray(YP3, np.float32), np.asarray(Y3, np.float32)
    expected = [[False, True, True], [False, False, True]]
    np.testing.assert_array_equal(np.isnan(compute_dice(p, g, include_background=True)), expected)
    np.testing.assert_array_equal(np.isnan(compute_iou(p, g, include_background=True)), expected)


YP4 = [[[[1.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]],
       [[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [1.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]]
Y4 = [[[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]],
      [[[0.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]]]]


def test_dice_iou_monai_class_means():
    # MONAI TEST_CASE_4 / 5 (DiceMetric / MeanIoU with mean_batch and mean over the not-NaN values).
    p, g = np.asarray(YP4, np.float32), np.asarray(Y4, np.float32)
    d = compute_dice(p, g, include_background=True)
    np.testing.assert_allclose(np.nanmean(d, axis=0), [0.6786, 0.4000, 0.6667], atol=1e-4)
    # "mean": the mean over the batch of the not-NaN channel means.
    np.testing.assert_allclose(np.nanmean(np.nanmean(d, axis=1)), 0.689683, atol=1e-4)
    i = compute_iou(p, g, include_background=True)
    np.testing.assert_allclose(np.nanmean(i, axis=0), [0.5416, 0.2500, 0.5000], atol=1e-4)
    np.testing.assert_allclose(np.nanmean(np.nanmean(i, axis=1)), 0.5555, atol=1e-4)


def test_dice_label_maps_with_num_classes():
    # MONAI's DiceHelper: single-channel class indices with num_classes (argmax of TEST_CASE_3's y_pred).
    p = np.argmax(np.asarray(YP4, np.float32), axis=1)[:, None]
    g = np.argmax(np.asarray(Y4, np.float32), axis=1)[:, None]
    onehot = lambda a: np.moveaxis(np.eye(3, dtype=np.float32)[a[:, 0]], -1, 1)
    np.testing.assert_allclose(compute_dice(p, g, num_classes=3), compute_dice(onehot(p), onehot(g)), atol=1e-7)


def _metrics_fixture_cases():
    with open(os.path.join(MAPS, "metrics.json")) as fh:
        return json.load(fh)["cases"]


@pytest.mark.parametrize("case", _metrics_fixture_cases(), ids=lambda c: c["name"])
def test_metrics_fixtures(case):
    z = load_npz("metrics.npz")
    pred, target = z[case["name"] + "_pred"], z[case["name"] + "_target"]
    n = max(case["classes"]) + 1
    onehot = lambda a: np.stack([a == c for c in range(n)])[None].astype(np.float32)
    p, g = onehot(pred), onehot(target)
    sp, tol = case["spacing"], case["nsd_tolerance"]
    res = dict(
        dice=compute_dice(p, g, include_background=True, ignore_empty=False),
        iou=compute_iou(p, g, include_background=True, ignore_empty=False),
        hd=compute_hausdorff_distance(p, g, include_background=True, spacing=sp),
        hd95=compute_hausdorff_distance(p, g, include_background=True, percentile=95, spacing=sp),
        assd=compute_average_surface_distance(p, g, include_background=True, symmetric=True, spacing=sp),
        nsd=compute_surface_dice(p, g, [tol] * n, include_background=True, spacing=sp),
    )
    for row in case["expected"]:
        c = row["class"]
        for key, v in res.items():
            got = float(v[0, c])
            if row[key] is None:  # MONAI gave NaN or inf
                assert not math.isfinite(got), (c, key, got)
            else:
                assert got == pytest.approx(row[key], rel=2e-6, abs=1e-6), (c, key)


def test_surface_metrics_in_one_pass(rng):
    from segloss.metrics import compute_surface_metrics

    p = (rng.random((2, 3, 20, 18, 9)) > 0.6).astype(np.float32)
    g = (rng.random((2, 3, 20, 18, 9)) > 0.6).astype(np.float32)
    g[1, 2] = 0
    kw = dict(include_background=True, spacing=(1.5, 1.0, 0.7))
    m = compute_surface_metrics(p, g, class_thresholds=[1.0, 0.5, 2.0], **kw)
    # The one-pass kernel works in float64 (the drop-ins round the distances to float32, as MONAI).
    np.testing.assert_allclose(m["hd"], compute_hausdorff_distance(p, g, **kw), rtol=1e-6)
    np.testing.assert_allclose(m["hd95"], compute_hausdorff_distance(p, g, percentile=95, **kw), rtol=1e-5)
    np.testing.assert_allclose(m["assd"], compute_average_surface_distance(p, g, symmetric=True, **kw), rtol=1e-6)
    np.testing.assert_allclose(m["nsd"], compute_surface_dice(p, g, [1.0, 0.5, 2.0], **kw), rtol=1e-6)


def test_empty_masks_and_output_kind():
    z = np.zeros((1, 1, 6, 6), np.float32)
    a = z.copy()
    a[0, 0, 1:3, 1:3] = 1
    kw = dict(include_background=True)
    for p, g, hd, hd95, asd, nsd in ((z, z, np.nan, np.nan, np.nan, np.nan), (a, z, np.inf, np.nan, np.inf, 0.0),
                                     (z, a, np.inf, np.nan, np.inf, 0.0)):
        np.testing.assert_array_equal(compute_hausdorff_distance(p, g, **kw), [[hd]])
        np.testing.assert_array_equal(compute_hausdorff_distance(p, g, percentile=95, **kw), [[hd95]])
        np.testing.assert_array_equal(compute_hausdorff_distance(p, g, directed=True, **kw), [[hd]])
        np.testing.assert_array_equal(compute_average_surface_distance(p, g, **kw), [[asd]])
        np.testing.assert_array_equal(compute_average_surface_distance(p, g, symmetric=True, **kw), [[asd]])
        np.testing.assert_array_equal(compute_surface_dice(p, g, [1.0], **kw), [[nsd]])
    # Shape checks use MONAI's message.
    with pytest.raises(ValueError, match=r"y_pred and y should have same shapes, got \(1, 1, 6, 6\) and \(1, 1, 6, 5\)"):
        compute_hausdorff_distance(a, a[..., :5], **kw)


def test_values_other_than_one_are_background_for_surfaces():
    # MONAI's get_mask_edges binarises non-bool input with `== 1`.
    p = np.zeros((1, 1, 8, 8))
    p[0, 0, 2:5, 2:5] = 1
    p2 = p.copy()
    p2[0, 0, 6, 6] = 2
    g = np.roll(p, 1, axis=-1)
    kw = dict(include_background=True)
    np.testing.assert_array_equal(compute_hausdorff_distance(p2, g, **kw), compute_hausdorff_distance(p, g, **kw))
    np.testing.assert_array_equal(compute_hausdorff_distance(p.astype(bool), g.astype(bool), **kw),
                                  compute_hausdorff_distance(p, g, **kw))


def test_per_batch_spacing():
    rng = np.random.default_rng(3)
    p = (rng.random((2, 1, 12, 10)) > 0.5).astype(np.float32)
    g = (rng.random((2, 1, 12, 10)) > 0.5).astype(np.float32)
    both = compute_hausdorff_distance(p, g, include_background=True, spacing=[[1.0, 2.0], [0.5, 0.5]])
    first = compute_hausdorff_distance(p[:1], g[:1], include_background=True, spacing=[1.0, 2.0])
    second = compute_hausdorff_distance(p[1:], g[1:], include_background=True, spacing=0.5)
    np.testing.assert_array_equal(both, np.concatenate([first, second]))
