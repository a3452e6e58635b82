"""A public retinal vessel simulator: fundus-like images with exact vessel labels and FOV masks.

The simulator is *public knowledge*, not data: its defaults come from published anatomy and imaging
facts, never from a private image (and never from DRIVE test images). It is the prior of the DP fit in
:mod:`privmed.methods.vessel_sim` and the dataset reference ``vessel-sim[:train|test]``.

What it draws, per image (all lengths scale with the field-of-view diameter D, so any image size works):

- a circular field of view of diameter ``fov_fraction`` x the shorter image side (DRIVE: about 540 of
  565 px, a 45 degree camera: Staal et al. 2004, IEEE TMI 23(4));
- an optic disc of diameter ``disc_diameter`` x D (1.8 mm on a retina of about 13 mm across a 45 degree
  field: Quigley et al. 1990, Arch Ophthalmol 108) at about 2.5 disc diameters nasal of the fovea
  (disc-fovea distance about 4.5 mm), brighter than the fundus; a darker fovea with an avascular zone;
- eight vessel trunks leaving the disc (superior/inferior, temporal/nasal, artery/vein); the temporal
  ones arch around the macula. Veins are ``vessel_width`` x D wide at the disc (main branches 100-150 um:
  Hubbard et al. 1999, Ophthalmology 106), arteries ``artery_vein_ratio`` as wide (AVR 0.65-0.75);
- asymmetric bifurcations until vessels are narrower than ``min_width_px``: child widths follow Murray's
  law w0^k = w1^k + w2^k (k = ``murray_exponent``, 3 in Murray 1926; retinal fits 2.5-3), branch angles
  Murray's optimum (cos t1 = (w0^4 + w1^4 - w2^4) / (2 w0^2 w1^2); about 75 degrees in total for a
  symmetric split, Zamir et al. 1979), scaled by ``branch_angle`` / 75; segments of ``segment_length``
  vessel widths between bifurcations; direction noise ``tortuosity``;
- the image: fundus brightness ``background`` with vignetting (illumination falls towards the rim),
  smooth texture, the disc and fovea, vessels darkening it by ``contrast`` (Beer-Lambert: thin vessels
  absorb less; arteries are lighter), then optical blur and sensor noise; black outside the FOV.

Labels are exact: a pixel is vessel if and only if its centre lies within half the local width of a
centre-line point, and the vessels drawn into the image are exactly those pixels (before blur). One
grayscale channel mimics the green channel of a fundus photograph, which is the channel segmentation uses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
from scipy import ndimage

from privmed.data.dataset import ImageDataset
from privmed.errors import DataError

REFERENCE_FOV_PX = 540.0
"""FOV diameter (pixels) of a DRIVE image: the scale at which pixel-valued defaults are stated."""

_STEP_PX = 0.5
_MAX_SEGMENTS = 4000
_FOVEA_OFFSET = 0.36  # disc-fovea distance / D: 4.5 mm on ~13 mm (45 degrees), fovea near the centre (macula-centred field)
_FAZ_RADIUS = 0.02  # foveal avascular zone radius / D: ~0.5 mm diameter


@dataclass(frozen=True)
class VesselSimParams:
    """The simulator's parameter vector (see the module docstring for each default's source).

    Lengths are fractions of the FOV diameter D unless named ``_px``; intensities are in [0, 1].
    """

    vessel_width: float = 0.013
    artery_vein_ratio: float = 0.72
    murray_exponent: float = 3.0
    asymmetry: float = 0.55
    branch_angle: float = 75.0
    segment_length: float = 10.0
    tortuosity: float = 0.06
    min_width_px: float = 1.0
    contrast: float = 0.3
    background: float = 0.5
    vignetting: float = 0.35
    disc_diameter: float = 0.14
    disc_brightness: float = 0.3
    fovea_darkness: float = 0.1
    texture: float = 0.03
    noise: float = 0.012
    blur_px: float = 0.8
    fov_fraction: float = 0.94

    def to_vector(self) -> np.ndarray:
        """The parameters as a float vector, in field order."""
        return np.array([getattr(self, f.name) for f in fields(self)], dtype=float)

    @classmethod
    def from_vector(cls, vector: np.ndarray) -> VesselSimParams:
        """Parameters from :meth:`to_vector` output."""
        return cls(**{f.name: float(v) for f, v in zip(fields(cls), vector)})

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def check(self) -> VesselSimParams:
        """Raise a :class:`DataError` if a parameter is outside its meaningful range; returns ``self``."""
        for name, low, high in PARAMETER_BOUNDS:
            value = getattr(self, name)
            if not (low <= value <= high) or not math.isfinite(value):
                raise DataError(f"vessel-sim: {name}={value} is outside [{low}, {high}]")
        return self


PARAMETER_BOUNDS: tuple[tuple[str, float, float], ...] = (
    ("vessel_width", 0.003, 0.04),
    ("artery_vein_ratio", 0.4, 1.0),
    ("murray_exponent", 2.0, 4.0),
    ("asymmetry", 0.2, 1.0),
    ("branch_angle", 30.0, 120.0),
    ("segment_length", 5.0, 60.0),
    ("tortuosity", 0.0, 0.3),
    ("min_width_px", 0.6, 4.0),
    ("contrast", 0.0, 0.9),
    ("background", 0.05, 0.95),
    ("vignetting", 0.0, 0.9),
    ("disc_diameter", 0.05, 0.25),
    ("disc_brightness", 0.0, 0.8),
    ("fovea_darkness", 0.0, 0.5),
    ("texture", 0.0, 0.3),
    ("noise", 0.0, 0.2),
    ("blur_px", 0.0, 3.0),
    ("fov_fraction", 0.5, 1.0),
)
"""(name, lowest, highest) of every parameter: what :meth:`VesselSimParams.check` accepts."""

_JITTER = ("contrast", "background", "vignetting", "disc_brightness", "texture", "noise")
"""Parameters that vary from image to image (by about 10 %), as exposure and pigmentation do."""


@dataclass
class _Tree:
    """Centre-line points of one image's vessels: positions (px), widths (px) and an artery flag."""

    x: np.ndarray
    y: np.ndarray
    width: np.ndarray
    artery: np.ndarray


def _grow(params: VesselSimParams, seed: np.random.SeedSequence, centre: np.ndarray, diameter: float, radius: float) -> tuple[_Tree, np.ndarray, np.ndarray, int]:
    """Vessel centre lines grown from the disc; also the disc and fovea positions and the eye side.

    Every segment draws from its own random stream, spawned from its parent's, so a small change of a
    parameter changes the tree a little (what the fit's finite differences need), not all of it.
    """
    trunk_seed, *segment_seeds = seed.spawn(9)
    rng = np.random.default_rng(trunk_seed)
    side = 1 if rng.random() < 0.5 else -1  # disc on the right (+1) or the left (-1) of the fovea
    fovea = centre + rng.normal(0.0, 0.02, 2) * diameter
    disc = fovea + np.array([side * _FOVEA_OFFSET * diameter, -0.03 * diameter])
    temporal = math.atan2(fovea[1] - disc[1], fovea[0] - disc[0])
    vein = params.vessel_width * diameter
    disc_radius = params.disc_diameter * diameter / 2
    segments: list[tuple[float, float, float, float, float, bool, np.random.SeedSequence]] = []
    for vertical in (-1.0, 1.0):
        for artery in (False, True):
            width = vein * (params.artery_vein_ratio if artery else 1.0)
            # Temporal arcade: leaves the disc roughly perpendicular to the disc-fovea axis and bends
            # towards the macula; nasal trunks head away from the fovea, nearly straight.
            angle = temporal + vertical * (math.radians(rng.uniform(70, 100)) + (0.15 if artery else 0.0))
            curvature = -vertical * rng.uniform(1.3, 2.0) / diameter
            start = disc + disc_radius * 0.3 * np.array([math.cos(angle), math.sin(angle)])
            segments.append((start[0], start[1], angle, width, curvature, artery, segment_seeds[len(segments)]))
            angle = temporal + math.pi - vertical * math.radians(rng.uniform(30, 75))
            start = disc + disc_radius * 0.3 * np.array([math.cos(angle), math.sin(angle)])
            segments.append((start[0], start[1], angle, 0.75 * width, 0.0, artery, segment_seeds[len(segments)]))
    xs, ys, widths, arteries = [], [], [], []
    min_width = params.min_width_px  # the resolution limit is the image's own pixel, whatever its size
    noise_per_step = params.tortuosity * math.sqrt(_STEP_PX / (0.01 * diameter))
    angle_scale = params.branch_angle / 75.0
    k = params.murray_exponent
    grown = 0
    while segments and grown < _MAX_SEGMENTS:
        x0, y0, angle0, width0, curvature, artery, segment_seed = segments.pop()
        rng = np.random.default_rng(segment_seed)
        thin_seed, thick_seed = segment_seed.spawn(2)
        grown += 1
        length = params.segment_length * width0 * rng.uniform(0.5, 1.5)
        if grown <= 8:
            length *= 0.5  # trunks split soon after leaving the disc
        steps = max(int(length / _STEP_PX), 2)
        turns = curvature * _STEP_PX + noise_per_step * rng.standard_normal(steps)
        angles = angle0 + np.cumsum(turns)
        x = x0 + np.cumsum(np.cos(angles)) * _STEP_PX
        y = y0 + np.cumsum(np.sin(angles)) * _STEP_PX
        width = np.linspace(width0, 0.97 * width0, steps)
        keep = (np.hypot(x - centre[0], y - centre[1]) <= radius + width) & (np.hypot(x - fovea[0], y - fovea[1]) > _FAZ_RADIUS * diameter)
        stop = steps if keep.all() else int(np.argmin(keep))
        if stop == 0:
            continue
        xs.append(x[:stop])
        ys.append(y[:stop])
        widths.append(width[:stop])
        arteries.append(np.full(stop, artery))
        end_width = width[stop - 1]
        if stop < steps or end_width < min_width:
            continue
        ratio = float(np.clip(params.asymmetry + 0.1 * rng.standard_normal(), 0.15, 1.0))
        thick = end_width / (1.0 + ratio**k) ** (1.0 / k)
        thin = ratio * thick
        cos_thick = (end_width**4 + thick**4 - thin**4) / (2 * end_width**2 * thick**2)
        cos_thin = (end_width**4 + thin**4 - thick**4) / (2 * end_width**2 * thin**2)
        turn_thick = angle_scale * math.acos(float(np.clip(cos_thick, -1, 1)))
        turn_thin = angle_scale * math.acos(float(np.clip(cos_thin, -1, 1)))
        direction = 1.0 if rng.random() < 0.5 else -1.0
        end = (x[stop - 1], y[stop - 1], angles[stop - 1])
        if thin >= min_width:
            segments.append((end[0], end[1], end[2] - direction * turn_thin, thin, 0.0, artery, thin_seed))
        if thick >= min_width:
            segments.append((end[0], end[1], end[2] + direction * turn_thick, thick, 0.7 * curvature, artery, thick_seed))
    if not xs:
        empty = np.zeros(0)
        return _Tree(empty, empty, empty, empty.astype(bool)), disc, fovea, side
    tree = _Tree(np.concatenate(xs), np.concatenate(ys), np.concatenate(widths), np.concatenate(arteries))
    return tree, disc, fovea, side


def rasterize(tree: _Tree, shape: tuple[int, int], values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The vessel label (pixels whose centre is within width/2 of a centre-line point) and, per pixel,
    the largest ``values`` entry of the points that cover it (0 elsewhere).

    Each point stamps the pixels of its own small window (grouped by window size), so the work is
    proportional to the vessel area, not to the image.
    """
    height, width = shape
    label = np.zeros(shape, dtype=bool)
    value_map = np.zeros(shape)
    if tree.x.size == 0:
        return label, value_map
    values = tree.width if values is None else values
    radius = tree.width / 2
    reach = np.ceil(radius).astype(int)
    for r in np.unique(reach):
        chosen = reach == r
        offsets = np.arange(-r, r + 1)
        base_row = np.floor(tree.y[chosen]).astype(int)
        base_col = np.floor(tree.x[chosen]).astype(int)
        rows = base_row[:, None, None] + offsets[None, :, None]
        cols = base_col[:, None, None] + offsets[None, None, :]
        # Pixel (row, col) has its centre at (col, row) in the (x, y) frame of the centre lines.
        inside = (cols - tree.x[chosen, None, None]) ** 2 + (rows - tree.y[chosen, None, None]) ** 2 <= radius[chosen, None, None] ** 2
        inside &= (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        rows, cols = np.broadcast_arrays(rows, cols)
        stamp = np.broadcast_to(values[chosen, None, None], inside.shape)
        label[rows[inside], cols[inside]] = True
        np.maximum.at(value_map, (rows[inside], cols[inside]), stamp[inside])
    return label, value_map


def _jittered(params: VesselSimParams, rng: np.random.Generator) -> VesselSimParams:
    factors = rng.lognormal(0.0, 0.1, len(_JITTER))
    changes = {name: getattr(params, name) * f for name, f in zip(_JITTER, factors)}
    changes["background"] = float(np.clip(changes["background"], 0.05, 0.95))
    return replace(params, **changes)


def render(params: VesselSimParams, shape: tuple[int, int], seed: np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image (float in [0, 1]), its vessel label and its FOV mask (bool), drawn from ``seed``
    (separate streams for the exposure jitter, the vessel tree, the texture and the sensor noise)."""
    height, width = shape
    jitter_seed, tree_seed, texture_seed, noise_seed = seed.spawn(4)
    p = _jittered(params, np.random.default_rng(jitter_seed))
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    radius = p.fov_fraction * min(height, width) / 2.0
    diameter = 2 * radius
    rows, cols = np.mgrid[0:height, 0:width].astype(float)
    fov = np.hypot(cols - centre[0], rows - centre[1]) <= radius
    tree, disc, fovea, _ = _grow(params, tree_seed, centre, diameter, radius)
    # Beer-Lambert: absorbance grows with the path through blood and saturates; arteries carry brighter blood.
    saturation = 0.006 * diameter
    absorbance = (1.0 - np.exp(-tree.width / saturation)) * np.where(tree.artery, 0.7, 1.0)
    label, shade = rasterize(tree, shape, absorbance)
    label &= fov

    rho = np.hypot(cols - centre[0], rows - centre[1]) / radius
    texture = ndimage.gaussian_filter(np.random.default_rng(texture_seed).standard_normal(shape), sigma=0.04 * diameter)
    texture /= texture.std() + 1e-8
    disc_distance = np.hypot(cols - disc[0], rows - disc[1]) / (p.disc_diameter * diameter / 2)
    disc_profile = 1.0 / (1.0 + np.exp((disc_distance - 1.0) / 0.12))
    fovea_profile = np.exp(-(np.hypot(cols - fovea[0], rows - fovea[1]) / (0.06 * diameter)) ** 2)
    fundus = p.background * (1.0 - p.vignetting * rho**2) * (1.0 + p.texture * texture)
    fundus = fundus + p.disc_brightness * disc_profile - p.fovea_darkness * p.background * fovea_profile
    image = fundus * (1.0 - p.contrast * shade * label)
    blur = p.blur_px * diameter / REFERENCE_FOV_PX
    if blur > 0:
        image = ndimage.gaussian_filter(image, blur)
    image = image + p.noise * np.random.default_rng(noise_seed).standard_normal(shape)
    return np.clip(image, 0.0, 1.0) * fov, label, fov


def simulate_vessels(
    n: int,
    size: int | tuple[int, int] = 96,
    seed: int = 0,
    params: VesselSimParams | None = None,
    subject_prefix: str = "sim",
) -> ImageDataset:
    """``n`` simulated fundus images (1 channel) with exact vessel labels and FOV masks.

    ``size`` is the side of a square image or (height, width), e.g. (584, 565) for DRIVE. Image ``i``
    depends only on ``seed``, ``i`` and the parameters, so a prefix of a larger draw is the smaller draw.
    """
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if n < 1:
        raise DataError(f"vessel-sim: the number of images must be at least 1, got {n}")
    if min(height, width) < 16:
        raise DataError(f"vessel-sim: images must be at least 16 pixels per side, got {height}x{width}")
    params = (params or VesselSimParams()).check()
    images = np.empty((n, 1, height, width), dtype=np.float32)
    labels = np.empty((n, 1, height, width), dtype=np.uint8)
    masks = np.empty((n, 1, height, width), dtype=np.uint8)
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(n)):
        image, label, fov = render(params, (height, width), child)
        images[i, 0], labels[i, 0], masks[i, 0] = image, label, fov
    ids = np.array([f"{subject_prefix}-{i:04d}" for i in range(n)])
    metadata: dict[str, Any] = {"generator": "simulate_vessels", "seed": seed, "size": [height, width], "params": params.to_dict()}
    return ImageDataset(
        images=images, segmentations=labels, masks=masks, subjects=ids, sources=ids, name="vessel-sim",
        record_kind="image", subjects_known=True, metadata=metadata,
    )


def make_vessel_sim(n_subjects: int, size: int = 96, seed: int = 0, subject_prefix: str = "sim") -> ImageDataset:
    """The embedded ``vessel-sim`` reference: the simulator at its public defaults."""
    return simulate_vessels(n_subjects, size, seed, None, subject_prefix)
