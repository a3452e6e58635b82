"""Content-aware differential privacy (CADP, seed 002): Laplace noise in a conditional INN's latent.

For each image ``x`` with class ``c``: ``z = f(x, c)``; ``z`` is clipped to the L1 ball of radius S
(``z * min(1, S / ||z||_1)``, per image); Laplace noise is added; ``f^-1(z_noisy, c)`` is released.
Decoding is post-processing, so the release is exactly as private as the noisy latent, whatever the
flow (no volume preservation is needed, contrary to the seed's proof).

The honest sensitivity: two latents clipped to the L1 ball of radius S differ by up to 2S in L1, so
the noise scale is 2S/epsilon for epsilon-DP per image. The seed uses S/epsilon, which gives 2*epsilon;
``paper_scale=True`` reproduces the seed's noise and reports that true epsilon. The class label is
used to decode; a conditional flow therefore needs the label released as public (``public_labels``)
or randomized (``label_epsilon``), and decodes with that released label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import torch
from torch import Tensor

from privmed.errors import PrivacyError
from privmed.methods.flow_training import load_trained_flow
from privmed.methods.local_dp import FLOW_DATA_NOTE, LaplacePrivatizer, privatize_in_latent_space
from privmed.models.flows import InvertibleFlow
from privmed.privacy.mechanisms import LaplaceMechanism


def clip_l1(latents: Tensor, radius: float) -> Tensor:
    """Scale each row of ``latents`` (N, D) by ``min(1, radius / ||row||_1)``: rows end inside the L1 ball."""
    norms = latents.abs().sum(dim=1, keepdim=True)
    factor = torch.clamp(radius / norms.clamp_min(torch.finfo(latents.dtype).tiny), max=1.0)
    return latents * factor


class CADP(LaplacePrivatizer):
    """CADP with a trained (conditional) flow, ``epsilon`` per image and L1 clipping radius ``clip``."""

    method_name = "cadp"

    def __init__(self, flow: InvertibleFlow, epsilon: float, clip: float, paper_scale: bool = False, *, reproducible: bool = False) -> None:
        super().__init__(epsilon, reproducible=reproducible)
        if not clip > 0:
            raise PrivacyError(f"the L1 clipping radius must be positive, got {clip}")
        self.flow = flow
        self.clip = clip
        self.paper_scale = paper_scale

    @classmethod
    def from_flow_dir(cls, epsilon: float, flow: str | Path, clip: float, paper_scale: bool = False, *, reproducible: bool = False) -> Self:
        """CADP with the flow trained into ``flow`` by ``privmed train flow`` (what the sweep and the CLI build)."""
        return cls(load_trained_flow(flow).flow, epsilon, float(clip), paper_scale=bool(paper_scale), reproducible=bool(reproducible))

    @property
    def sensitivity(self) -> float:
        """2S: the L1 diameter of the ball the latents are clipped to."""
        return 2.0 * self.clip

    @property
    def mechanism_epsilon(self) -> float:
        """``epsilon``; with ``paper_scale`` the epsilon that the seed's scale S/epsilon truly gives, 2*epsilon."""
        return 2.0 * self.epsilon if self.paper_scale else self.epsilon

    def noisy_latents(self, latents: Tensor, seed: int | None = None) -> Tensor:
        """The mechanism itself: clip each latent (N, D) to the L1 ball, add Laplace noise. Decoding is post-processing."""
        return self._perturb(latents, self._mechanism(seed))

    def _perturb(self, latents: Tensor, mechanism: LaplaceMechanism) -> Tensor:
        return mechanism.add_noise(clip_l1(latents, self.clip))

    def _privatize_tensor(self, records: Tensor, labels: Tensor | None, mechanism: LaplaceMechanism) -> Tensor:
        return privatize_in_latent_space(self.flow, records, labels, lambda z: self._perturb(z, mechanism))

    def _extra_notes(self) -> list[str]:
        notes = [
            f"latents clipped per image to the L1 ball of radius S={self.clip:g}; two clipped latents differ by up to "
            f"2S={self.sensitivity:g} in L1, so the Laplace scale is 2S/epsilon (seed 002 uses S/epsilon)",
            "seed 002's Algorithm 1 rescales every latent to norm exactly S; here a latent already inside the ball is kept",
            FLOW_DATA_NOTE,
        ]
        if self.flow.conditional:
            notes.append("the class label conditions the flow: each image is decoded with its released label (public or randomized, see below)")
        else:
            notes.append("the flow is not conditional: nothing keeps each image's class (seed 002 conditions on it)")
        if self.paper_scale:
            notes.insert(
                0,
                f"paper scale: noise S/epsilon with the nominal epsilon={self.epsilon:g} as in seed 002; as the L1 "
                f"sensitivity is 2S, the true guarantee is epsilon={self.release_epsilon:g} per image (twice the nominal)",
            )
        return notes
