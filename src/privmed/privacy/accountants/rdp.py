"""Rényi-DP accounting of DP-SGD, computed by Opacus's RDP analysis (Mironov et al. 2019)."""

from __future__ import annotations

from privmed.privacy.accountants.base import SubsampledGaussianAccountant

# dp-accounting's default orders. Opacus's stop at 63, and the RDP-to-DP conversion then cannot
# certify an epsilon below about log(1/delta)/62 (0.19 at delta=1e-5) however large the noise.
RDP_ORDERS: tuple[float, ...] = tuple([1 + x / 10 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024])


class RDPAccountant(SubsampledGaussianAccountant):
    """Subsampled-Gaussian accounting by Rényi DP (Opacus's analysis over :data:`RDP_ORDERS`).

    RDP is a valid upper bound but looser than PRV by a few percent; it is the default because it
    is fast and is what the DP-GAN papers privmed reproduces report.
    """

    mechanism = "rdp"

    def _epsilon(self, delta: float) -> float:
        # Imported here: opacus pulls in torch and most of its stack, which `import privmed.data` should not pay for.
        from opacus.accountants import RDPAccountant as OpacusRDPAccountant

        opacus_accountant = OpacusRDPAccountant()
        opacus_accountant.history = list(self.history)
        return float(opacus_accountant.get_epsilon(delta=delta, alphas=list(RDP_ORDERS)))
