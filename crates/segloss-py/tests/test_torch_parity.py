"""segloss.metrics and segloss.losses against MONAI itself on torch tensors: values, output kind and device,
gradients. Skipped when torch or MONAI is not installed (see .ci/python-torch.sh)."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
monai_metrics = pytest.importorskip("monai.metrics")
monai_losses = pytest.importorskip("monai.losses")

import segloss.metrics as sm  # noqa: E402
from segloss.losses import HausdorffDTLoss, UNetWeightedBCELoss  # noqa: E402

warnings.filterwarnings("ignore", message=".*is all 0.*")


def random_onehot(rng, b, c, shape, smooth=True):
    x = rng.random((b, c) + shape)
    if smooth:
        from scipy import ndimage as ndi

        x = ndi.uniform_filter(x, size=(1, 1) + (5,) * len(shape))
    lab = np.argmax(x, axis=1)
    return torch.from_numpy(np.moveaxis(np.eye(c, dtype=np.float32)[lab], -1, 1).copy())


@pytest.fixture(params=[(2, 3, (40, 36)), (1, 3, (14, 16, 12))], ids=["2d", "3d"])
def pair(request):
    pytest.importorskip("scipy")
    rng = np.random.default_rng(11)
    b, c, shape = request.param
    p = random_onehot(rng, b, c, shape)
    g = random_onehot(rng, b, c, shape)
    g[0, 2] = 0  # an empty target class
    p[-1, 1] = 0  # an empty prediction class
    return p, g


def close(ours, theirs, rtol=2e-6):
    assert isinstance(ours, torch.Tensor) and ours.dtype == theirs.dtype and ours.device == theirs.device
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=rtol, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("spacing", [None, 0.8, "aniso"])
@pytest.mark.parametrize("include_background", [True, False])
def test_surface_metrics_match_monai(pair, spacing, include_background):
    p, g = pair
    if spacing == "aniso":
        spacing = [1.5, 0.7, 1.1][: p.ndim - 2]
    kw = dict(include_background=include_background, spacing=spacing)
    for percentile in (None, 95, 50):
        for directed in (False, True):
            close(sm.compute_hausdorff_distance(p, g, percentile=percentile, directed=directed, **kw),
                  monai_metrics.compute_hausdorff_distance(p, g, percentile=percentile, directed=directed, **kw))
    for symmetric in (False, True):
        close(sm.compute_average_surface_distance(p, g, symmetric=symmetric, **kw),
              monai_metrics.compute_average_surface_distance(p, g, symmetric=symmetric, **kw))
    thr = [1.0, 0.0, 2.5][: p.shape[1] - (0 if include_background else 1)]
    close(sm.compute_surface_dice(p, g, thr, **kw), monai_metrics.compute_surface_dice(p, g, thr, **kw))
    # The one-pass kernel: its HD95 is interpolated in float64.
    one = sm.compute_surface_metrics(p, g, thr, **kw)
    close(one["hd"], monai_metrics.compute_hausdorff_distance(p, g, **kw))
    close(one["hd95"], monai_metrics.compute_hausdorff_distance(p, g, percentile=95, **kw), rtol=1e-5)
    close(one["assd"], monai_metrics.compute_average_surface_distance(p, g, symmetric=True, **kw))
    close(one["nsd"], monai_metrics.compute_surface_dice(p, g, thr, **kw))


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("ignore_empty", [True, False])
def test_overlap_metrics_match_monai(pair, include_background, ignore_empty):
    p, g = pair
    kw = dict(include_background=include_background, ignore_empty=ignore_empty)
    close(sm.compute_dice(p, g, **kw), monai_metrics.compute_dice(p, g, **kw))
    close(sm.compute_iou(p, g, **kw), monai_metrics.compute_iou(p, g, **kw))


def test_ignore_index_matches_monai(pair):
    p, g = pair
    for ii in (0, 1, 7):
        close(sm.compute_dice(p, g, ignore_index=ii), monai_metrics.compute_dice(p, g, ignore_index=ii))
        close(sm.compute_iou(p, g, ignore_index=ii), monai_metrics.compute_iou(p, g, ignore_index=ii))
        close(sm.compute_hausdorff_distance(p, g, ignore_index=ii),
              monai_metrics.compute_hausdorff_distance(p, g, ignore_index=ii))
        thr = [1.0] * (p.shape[1] - 1)
        close(sm.compute_surface_dice(p, g, thr, ignore_index=ii),
              monai_metrics.compute_surface_dice(p, g, thr, ignore_index=ii))


def test_numpy_in_numpy_out(pair):
    p, g = pair
    out = sm.compute_hausdorff_distance(p.numpy(), g.numpy())
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, sm.compute_hausdorff_distance(p, g).numpy())


def test_delegated_options_match_monai(pair):
    # chessboard / taxicab distances and subvoxel surface Dice are MONAI's own code.
    p, g = pair
    for metric in ("chessboard", "taxicab"):
        close(sm.compute_hausdorff_distance(p, g, distance_metric=metric),
              monai_metrics.compute_hausdorff_distance(p, g, distance_metric=metric))


# MONAI tests/metrics/test_hausdorff_distance.py, the chessboard/taxicab columns of TEST_CASES
# (first cases), through the delegation.
def test_hausdorff_monai_cases_other_metrics():
    from test_metrics import S, batch

    seg_1, seg_2 = S(radius=20, centre=(20, 33, 22)), S(radius=40, centre=(20, 33, 22))
    p, g = torch.from_numpy(batch(seg_1)), torch.from_numpy(batch(seg_2))
    for metric, directed, expected in (("chessboard", True, 15), ("chessboard", False, 20),
                                        ("taxicab", True, 24), ("taxicab", False, 35)):
        out = sm.compute_hausdorff_distance(p, g, distance_metric=metric, directed=directed)
        np.testing.assert_allclose(out.numpy(), np.full((2, 2), expected), rtol=1e-6)


@pytest.mark.parametrize("kw", [
    dict(), dict(include_background=True), dict(sigmoid=True), dict(softmax=True), dict(alpha=1.5),
    dict(batch=True), dict(reduction="sum"), dict(reduction="none"), dict(to_onehot_y=True, softmax=True),
])
@pytest.mark.parametrize("spatial", [(24, 20), (10, 12, 9)], ids=["2d", "3d"])
def test_hausdorff_dt_loss_matches_monai(kw, spatial):
    torch.manual_seed(0)
    x = torch.randn((3, 3) + spatial, dtype=torch.float32)
    if kw.get("to_onehot_y"):
        target = torch.randint(0, 3, (3, 1) + spatial).float()
    else:
        target = (torch.rand((3, 3) + spatial) > 0.5).float()
        target[0, 1] = 0  # an empty channel
    if not (kw.get("sigmoid") or kw.get("softmax")):
        x = torch.sigmoid(x)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    ours = HausdorffDTLoss(**kw)(x1, target)
    theirs = monai_losses.HausdorffDTLoss(**kw)(x2, target)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-6, atol=1e-7)
    ours.sum().backward()
    theirs.sum().backward()
    np.testing.assert_allclose(x1.grad.numpy(), x2.grad.numpy(), rtol=1e-5, atol=1e-8)


def test_hausdorff_dt_loss_errors():
    with pytest.raises(ValueError, match="Only 2D"):
        HausdorffDTLoss()(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(AssertionError, match="ground truth has different shape"):
        HausdorffDTLoss()(torch.zeros(2, 3, 4, 4), torch.zeros(2, 2, 4, 4))


def test_unet_weighted_bce_formula_and_gradient():
    import segloss

    torch.manual_seed(1)
    target = torch.zeros(2, 1, 32, 30)
    target[0, 0, 4:10, 4:10] = 1
    target[0, 0, 4:10, 13:20] = 1
    target[1, 0, 20:28, 5:25] = 1
    logits = torch.randn(2, 1, 32, 30, dtype=torch.float64, requires_grad=True)
    loss = UNetWeightedBCELoss(w0=10.0, sigma=5.0)(logits, target)
    w = np.stack([segloss.unet_weight_map(target[i, 0].numpy() > 0.5, 10.0, 5.0, instances=False)
                  for i in range(2)])[:, None]
    z = logits.detach().numpy()
    t = target.numpy()
    bce = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    np.testing.assert_allclose(loss.item(), (w * bce).mean(), rtol=1e-6)
    loss.backward()
    sig = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(logits.grad.numpy(), w * (sig - t) / z.size, rtol=1e-5, atol=1e-12)
    # The border term raises the weight between the two touching-distance cells.
    assert w[0, 0, 6, 11] > w[0, 0, 6, 2]
    with pytest.raises(ValueError, match="invalid parameter sigma = 0"):
        UNetWeightedBCELoss(sigma=0.0)
