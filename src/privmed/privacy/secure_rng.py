"""DP noise from a cryptographically secure source, for releases whose noise must not be predictable.

torch's generators (Mersenne Twister on CPU, Philox on CUDA) are fast and fine for statistics, but
their output can be predicted from their state or from enough earlier output; a DP guarantee assumes
the noise is unknown to the adversary. :class:`SecureNoise` draws its bits from AES-256 in counter
mode (the ``cryptography`` package, AES-NI where the CPU has it) under a key and counter taken from
``os.urandom``, turns them into float64 uniforms at 53-bit resolution (the odd multiples of 2**-53,
each of the 2**52 equally likely), then into Gaussian (Box-Muller) or Laplace (inverse CDF) noise.

It takes no seed and has no state to save: its noise cannot be reproduced, by design (a resumed run
continues with fresh secure noise). The key is renewed when the process id changes, so a forked
child never repeats its parent's stream. Like every floating-point sampler, it does not defend
against attacks on the low-order bits of floating-point noise (Mironov 2012); the uniforms never
reach 0 or 1, so Gaussian draws stop at about 8.6 standard deviations and Laplace draws at about
36 scales (tails of probability below 1e-15).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_KEY_BYTES = 32
_BLOCK_BYTES = 16
_RANDOM_BITS = 52  # k uniform in [0, 2**52): u = (2k + 1) / 2**53 is exact in float64
_ONE_BITS = np.uint64(0x3FF0000000000000)  # the float64 bit pattern of 1.0
_UNIT_OFFSET = 1.0 - 2.0**-53
_CHUNK_VALUES = 1 << 22  # uniforms per keystream call: bounds the scratch memory (32 MiB of bytes)


class SecureNoise:
    """Gaussian and Laplace noise from an AES-256-CTR keystream keyed by ``os.urandom`` (no seed, by design).

    One instance may serve many draws; it is not thread-safe (give each thread its own).
    """

    def __init__(self) -> None:
        self._rekey()

    def _rekey(self) -> None:
        cipher = Cipher(algorithms.AES(os.urandom(_KEY_BYTES)), modes.CTR(os.urandom(_BLOCK_BYTES)))
        self._encryptor = cipher.encryptor()
        self._pid = os.getpid()
        self._zeros = b""
        self._out = bytearray()

    def random_words(self, count: int) -> np.ndarray:
        """``count`` independent uniformly random 64-bit words (the raw keystream)."""
        if os.getpid() != self._pid:
            self._rekey()
        nbytes = 8 * int(count)
        if len(self._zeros) < nbytes:
            self._zeros = bytes(nbytes)
            self._out = bytearray(nbytes + _BLOCK_BYTES - 1)
        self._encryptor.update_into(memoryview(self._zeros)[:nbytes], self._out)
        return np.frombuffer(self._out, dtype=np.uint64, count=count)

    def _chunks(self, count: int) -> Iterator[np.ndarray]:
        for start in range(0, count, _CHUNK_VALUES):
            yield self.random_words(min(_CHUNK_VALUES, count - start))

    def uniform(self, count: int) -> torch.Tensor:
        """``count`` float64 uniforms ``(2k + 1) / 2**53`` on the open interval (0, 1), k uniform in [0, 2**52)."""
        return torch.from_numpy(_joined([_open_unit(words) for words in self._chunks(count)]))

    def gaussian(
        self,
        shape: torch.Size | tuple[int, ...],
        std: float,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Independent N(0, std^2) draws of ``shape`` by Box-Muller on secure uniforms (computed in float64)."""
        count = math.prod(shape)
        pairs = (count + 1) // 2
        uniforms = self.uniform(2 * pairs)
        radius = uniforms[:pairs].log_().mul_(-2.0).sqrt_().mul_(float(std))
        angle = uniforms[pairs:].mul_(2.0 * math.pi)
        values = torch.cat([radius * torch.cos(angle), radius.mul_(angle.sin_())])[:count]
        return values.reshape(shape).to(dtype=dtype, device=device)

    def laplace(
        self,
        shape: torch.Size | tuple[int, ...],
        scale: float,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Independent Laplace(0, scale) draws of ``shape`` by the inverse CDF on secure bits (float64).

        The inverse CDF in two halves: a magnitude ``-scale * log(u)`` from a uniform ``u`` (the
        exponential's inverse CDF) and an independent random sign, from the word's lowest bit.
        """
        parts = []
        for words in self._chunks(math.prod(shape)):
            magnitude = np.log(_open_unit(words))
            magnitude *= -float(scale)
            magnitude.view(np.uint64)[...] |= (words & np.uint64(1)) << np.uint64(63)
            parts.append(magnitude)
        return torch.from_numpy(_joined(parts)).reshape(shape).to(dtype=dtype, device=device)


def _open_unit(words: np.ndarray) -> np.ndarray:
    """Words -> float64 uniforms on (0, 1) from their top 52 bits: 1 + k/2**52 by its bit pattern, minus (1 - 2**-53)."""
    bits = words >> np.uint64(64 - _RANDOM_BITS)
    bits |= _ONE_BITS
    values = bits.view(np.float64)
    values -= _UNIT_OFFSET
    return values


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """The chunks as one float64 array (no copy for a single chunk)."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0)
