"""The public vessel simulator: exact labels, field of view, sizes, determinism, dataset refs."""

from __future__ import annotations

import numpy as np
import pytest

from privmed.data import load
from privmed.data.vessel_sim import VesselSimParams, _Tree, rasterize, simulate_vessels
from privmed.errors import DataError

# Everything but the vessels switched off: a flat fundus (its brightness varies from image to image).
FLAT = VesselSimParams(vignetting=0.0, disc_brightness=0.0, fovea_darkness=0.0, texture=0.0, noise=0.0, blur_px=0.0)


def test_label_pixels_are_exactly_the_pixels_the_vessels_darken() -> None:
    data = simulate_vessels(3, size=(120, 100), seed=4, params=FLAT)
    image, label, fov = data.images[:, 0], data.segmentations[:, 0].astype(bool), data.masks[:, 0].astype(bool)
    assert label.any()
    for i in range(3):
        fundus = image[i][fov[i]].max()
        np.testing.assert_array_equal(fov[i] & (image[i] < fundus - 1e-6), label[i])
        np.testing.assert_allclose(image[i][fov[i] & ~label[i]], fundus, atol=1e-6)


def test_rasterize_is_the_union_of_discs_around_the_centre_line_points() -> None:
    rng = np.random.default_rng(0)
    tree = _Tree(x=rng.uniform(-3, 33, 60), y=rng.uniform(-3, 28, 60), width=rng.uniform(0.8, 7.0, 60), artery=np.zeros(60, bool))
    label, widest = rasterize(tree, (25, 30))
    rows, cols = np.mgrid[0:25, 0:30]
    distance = np.hypot(cols[..., None] - tree.x, rows[..., None] - tree.y)
    covers = distance <= tree.width / 2
    np.testing.assert_array_equal(label, covers.any(-1))
    np.testing.assert_allclose(widest, np.where(covers, tree.width, 0).max(-1))


def test_field_of_view_is_a_centred_disc_and_nothing_lies_outside_it() -> None:
    data = simulate_vessels(2, size=80, seed=1, params=VesselSimParams(fov_fraction=0.8))
    fov = data.masks[0, 0].astype(bool)
    assert (data.masks == data.masks[0]).all()
    assert fov.mean() == pytest.approx(np.pi * 0.4**2, rel=0.05)
    assert (data.images[:, 0][:, ~fov] == 0).all() and not data.segmentations[:, 0][:, ~fov].any()


def test_any_size_and_vessel_widths_of_a_few_pixels_at_drive_scale() -> None:
    small = simulate_vessels(1, size=(40, 56), seed=0)
    assert small.images.shape == (1, 1, 40, 56) and small.images.dtype == np.float32
    drive = simulate_vessels(1, size=(584, 565), seed=0)
    fraction = drive.segmentations[drive.masks > 0].mean()
    assert 0.02 < fraction < 0.3


def test_deterministic_per_seed_and_a_prefix_of_a_larger_draw() -> None:
    first, again, other = (simulate_vessels(3, size=48, seed=s) for s in (7, 7, 8))
    assert first.fingerprint() == again.fingerprint() != other.fingerprint()
    longer = simulate_vessels(5, size=48, seed=7)
    np.testing.assert_array_equal(longer.images[:3], first.images)


def test_out_of_range_parameters_are_refused() -> None:
    with pytest.raises(DataError, match="contrast"):
        simulate_vessels(1, params=VesselSimParams(contrast=2.0))


def test_dataset_refs_with_a_count_and_options() -> None:
    train, test = load("vessel-sim:4"), load("vessel-sim:test", n=2, size=64)
    assert (len(train), train.spatial_shape, len(test), test.spatial_shape) == (4, (96, 96), 2, (64, 64))
    assert train.segmentations is not None and train.masks is not None
    assert train.fingerprint() != load("vessel-sim:test", n=4).fingerprint()
