"""The randomness a DP guarantee rests on: noise and batch sampling from an AES-256-CTR keystream.

torch's and numpy's generators (Mersenne Twister, Philox, PCG) are fast and fine for statistics, but
their output can be predicted from their seed, their state, or enough earlier output; a DP guarantee
assumes the adversary knows neither the noise nor which units were in which batch. A
:class:`RandomStream` draws its bits from AES-256 in counter mode (the ``cryptography`` package,
AES-NI where the CPU has it) and turns them into float64 uniforms, Gaussian (Box-Muller) or Laplace
(inverse CDF) draws; the caller casts them to its dtype afterwards.

Two kinds of stream, the same arithmetic:

- `RandomStream.secret_stream()` (the default everywhere): key and counter from ``os.urandom``, no seed,
  no state to save (a resumed run continues with fresh secret randomness); the key is renewed when
  the process id changes, so a forked child never repeats its parent's stream.
  :meth:`RandomStream.from_key` shares one secret key between the processes of a data-parallel job
  (it travels by broadcast, never to disk).
- :meth:`RandomStream.seeded` (a reproducible research run): the key is a hash of a purpose and the
  public seed, and :meth:`RandomStream.state_dict` is the position in the stream. Anyone who knows the
  seed can regenerate this randomness: such a run carries no guarantee against them.

Why by hand: no library we use offers a CSPRNG that yields Gaussian and Laplace arrays, and the
floating-point samplers of torch truncate the tails (torch's float32 ``normal_`` builds each value
from a 24-bit uniform, so it never goes past about 5.77 standard deviations; an output past that cut
is impossible under one dataset and possible under its neighbour, which adds to delta). Here a
uniform has 52 random bits and, when it falls below 2**-32, 52 more (it is then refined to a
resolution of 2**-104): Gaussian draws reach about 12 standard deviations and Laplace draws about 72
scales, the tail mass up to there follows the exact distribution to within the uniforms' resolution
(a relative 2**-20 at worst), and beyond lies less than 1e-31. Like every floating-point sampler, it does not defend against attacks on the low-order bits
of floating-point noise (Mironov 2012).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from privmed.errors import PrivacyError

KEY_BYTES = 32
_BLOCK_BYTES = 16
_RANDOM_BITS = 52  # k uniform in [0, 2**52): u = (2k + 1) / 2**53 is exact in float64
_ONE_BITS = np.uint64(0x3FF0000000000000)  # the float64 bit pattern of 1.0
_UNIT_OFFSET = 1.0 - 2.0**-53
_REFINE_BELOW = np.uint64(1 << 32)  # words below this give u < 2**-32: 52 more bits refine them
_CHUNK_VALUES = 1 << 22  # words per keystream call: bounds the scratch memory (32 MiB of bytes)


class RandomStream:
    """Uniform, Gaussian and Laplace draws (computed in float64) from an AES-256-CTR keystream.

    Build one with :meth:`secret_stream` (unpredictable, the default for every release), :meth:`from_key`
    (a secret key shared by the ranks of one job) or :meth:`seeded` (reproducible from a public
    seed). Not thread-safe: one thread draws from one stream at a time.
    """

    def __init__(self, key: bytes, nonce: bytes, *, secret: bool, rekey_on_fork: bool = False) -> None:
        if len(key) != KEY_BYTES or len(nonce) != _BLOCK_BYTES:
            raise PrivacyError(f"an AES-256-CTR stream needs a {KEY_BYTES}-byte key and a {_BLOCK_BYTES}-byte nonce")
        self.secret = secret
        self._seed: int | None = None
        self._purpose = ""
        self._key, self._nonce = key, nonce
        self._rekey_on_fork = rekey_on_fork
        self._pid = os.getpid()
        self._zeros = b""
        self._out = bytearray()
        self._work: np.ndarray | None = None
        self._seek(0)

    @classmethod
    def secret_stream(cls) -> RandomStream:
        """A stream keyed by ``os.urandom``: nobody, this process included, can reproduce it."""
        return cls(os.urandom(KEY_BYTES), os.urandom(_BLOCK_BYTES), secret=True, rekey_on_fork=True)

    @classmethod
    def from_key(cls, key: bytes) -> RandomStream:
        """A secret stream from a key the caller drew from ``os.urandom`` (e.g. one shared by broadcast)."""
        return cls(bytes(key), bytes(_BLOCK_BYTES), secret=True)

    @classmethod
    def seeded(cls, seed: int, purpose: str) -> RandomStream:
        """A reproducible stream: key = SHA-256 of ``purpose`` and ``seed`` (so each purpose gets its own stream)."""
        stream = cls(_seeded_key(seed, purpose), bytes(_BLOCK_BYTES), secret=False)
        stream._seed, stream._purpose = int(seed), purpose
        return stream

    @property
    def position(self) -> int:
        """64-bit words consumed so far."""
        return self._position

    def _seek(self, position: int) -> None:
        block, skip = divmod(int(position), 2)
        counter = (int.from_bytes(self._nonce, "big") + block) % (1 << 128)
        self._encryptor = Cipher(algorithms.AES(self._key), modes.CTR(counter.to_bytes(_BLOCK_BYTES, "big"))).encryptor()
        self._position = 2 * block
        if skip:
            self.random_words(1)

    def state_dict(self) -> dict[str, Any]:
        """A seeded stream's seed and position (to resume it exactly); a secret stream has no state to save."""
        return {"secret": True} if self.secret else {"seed": self._seed, "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue a seeded stream from :meth:`state_dict`; a secret stream keeps drawing fresh secret bits."""
        if self.secret != bool(state.get("secret", False)):
            raise PrivacyError("this state comes from the other kind of stream (secret vs reproducible): resume with the same options")
        if not self.secret:
            self._seed = int(state["seed"])
            self._key = _seeded_key(self._seed, self._purpose)
            self._seek(int(state["position"]))

    def random_words(self, count: int) -> np.ndarray:
        """``count`` independent uniformly random 64-bit words (the raw keystream; a view valid until the next call)."""
        if self._rekey_on_fork and os.getpid() != self._pid:
            self._key, self._nonce, self._pid = os.urandom(KEY_BYTES), os.urandom(_BLOCK_BYTES), os.getpid()
            self._seek(0)
        nbytes = 8 * int(count)
        if len(self._zeros) < nbytes:
            self._zeros = bytes(nbytes)
            self._out = bytearray(nbytes + _BLOCK_BYTES - 1)
        self._encryptor.update_into(memoryview(self._zeros)[:nbytes], self._out)
        self._position += int(count)
        return np.frombuffer(self._out, dtype=np.uint64, count=count)

    def _chunks(self, count: int) -> Iterator[np.ndarray]:
        for start in range(0, count, _CHUNK_VALUES):
            yield self.random_words(min(_CHUNK_VALUES, count - start))

    def _unit(self, words: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Uniforms on (0, 1) into ``out`` from ``words``, refined below 2**-32 by 52 more bits of the stream."""
        _open_unit(words, out)
        small = np.flatnonzero(words < _REFINE_BELOW) if words.size and words.min() < _REFINE_BELOW else np.empty(0, np.int64)
        if small.size:
            # Taken before the next draw, which reuses the keystream buffer ``words`` may view.
            head = (words[small] >> np.uint64(64 - _RANDOM_BITS)).astype(np.float64)
            extra = np.empty(small.size)
            _open_unit(self.random_words(small.size), extra)
            # u = (k + f) / 2**52 with f a fresh uniform instead of 1/2: resolution 2**-104 near 0.
            out[small] = (head + extra) * 2.0**-_RANDOM_BITS
        return out

    def _uniform_into(self, out: np.ndarray) -> np.ndarray:
        start = 0
        for words in self._chunks(out.size):
            self._unit(words, out[start : start + words.size])
            start += words.size
        return out

    def uniform(self, count: int) -> np.ndarray:
        """``count`` float64 uniforms on the open interval (0, 1)."""
        return self._uniform_into(np.empty(int(count)))

    def _scratch(self, pairs: int) -> tuple[np.ndarray, np.ndarray]:
        """Two float64 work arrays of ``pairs`` values, kept between draws (fresh pages cost as much as the arithmetic)."""
        if self._work is None or self._work.shape[1] < pairs:
            self._work = np.empty((2, pairs))
        return self._work[0, :pairs], self._work[1, :pairs]

    def _polar(self, count: int, std: float) -> tuple[int, np.ndarray, np.ndarray]:
        """Box-Muller's radius ``std * sqrt(-2 log u)`` (float64, u refined near 0) and angle ``2 pi v`` for ``count`` draws."""
        pairs = (int(count) + 1) // 2
        radius, angle = self._scratch(pairs)
        self._uniform_into(radius)
        self._uniform_into(angle)
        np.log(radius, out=radius)
        radius *= -2.0 * float(std) ** 2
        np.sqrt(radius, out=radius)
        angle *= 2.0 * math.pi
        return pairs, radius, angle

    def standard_gaussian(self, count: int) -> np.ndarray:
        """``count`` float64 N(0, 1) draws by Box-Muller: radius from a refined uniform, angle from a 52-bit one.

        The pairs come out as ``[r cos(a) for each pair] + [r sin(a) for each pair]``.
        """
        pairs, radius, angle = self._polar(count, 1.0)
        out = np.empty(2 * pairs)
        # torch's vectorized float64 sine and cosine are several times faster than numpy's.
        turned = torch.from_numpy(angle)
        torch.cos(turned, out=torch.from_numpy(out[:pairs]))
        torch.sin(turned, out=torch.from_numpy(out[pairs:]))
        out[:pairs] *= radius
        out[pairs:] *= radius
        return out[: int(count)]

    def standard_laplace(self, count: int) -> np.ndarray:
        """``count`` float64 Laplace(0, 1) draws: magnitude ``-log(u)`` (refined u), sign from an independent bit."""
        out = np.empty(int(count))
        start = 0
        for words in self._chunks(int(count)):
            sign = (words & np.uint64(1)) << np.uint64(63)  # the lowest bit is not among the 52 that make u
            part = self._unit(words, out[start : start + words.size])
            np.log(part, out=part)
            np.negative(part, out=part)
            part.view(np.uint64)[...] |= sign
            start += words.size
        return out

    def gaussian(
        self,
        shape: torch.Size | tuple[int, ...],
        std: float,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Independent N(0, std^2) draws of ``shape`` in ``dtype``.

        The radius's ``-2 log u``, which alone decides how far the tail reaches, is always computed in
        float64 from a refined uniform. For a float32 result the angle comes from 24 random bits and its
        sine and cosine, the square root and the product are computed in float32 (about twice as fast):
        the result is within a few float32 roundings of the float64 computation.
        """
        count = math.prod(shape)
        if dtype == torch.float64 or not dtype.is_floating_point:
            values = self.standard_gaussian(count)
            values *= float(std)
            return torch.from_numpy(values).reshape(shape).to(dtype=dtype, device=device)
        pairs = (count + 1) // 2
        radius, _ = self._scratch(pairs)
        self._uniform_into(radius)
        np.log(radius, out=radius)
        radius *= -2.0 * float(std) ** 2
        length = torch.from_numpy(radius).to(dtype).sqrt_()
        # The angle needs no more than float32's 24 bits: 32-bit words, (j + 1/2) / 2**24 of a turn.
        angle = self.random_words((pairs + 1) // 2).view(np.uint32)[:pairs] >> np.uint32(8)
        turn = torch.from_numpy(angle.astype(np.float32)).add_(0.5).mul_(2.0 * math.pi * 2.0**-24).to(dtype)
        out = torch.empty(2 * pairs, dtype=dtype)
        torch.cos(turn, out=out[:pairs]).mul_(length)
        torch.sin(turn, out=out[pairs:]).mul_(length)
        return out[:count].reshape(shape).to(device=device)

    def laplace(
        self,
        shape: torch.Size | tuple[int, ...],
        scale: float,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Independent Laplace(0, scale) draws of ``shape``, computed in float64 and then cast to ``dtype``."""
        values = self.standard_laplace(math.prod(shape))
        values *= float(scale)
        return torch.from_numpy(values).reshape(shape).to(dtype=dtype, device=device)


def random_stream(seed: int | None, purpose: str) -> RandomStream:
    """The stream for ``purpose``: secret when ``seed`` is None (the default), else reproducible from ``seed``."""
    return RandomStream.secret_stream() if seed is None else RandomStream.seeded(seed, purpose)


def new_secret_key() -> bytes:
    """A fresh key for :meth:`RandomStream.from_key` (from ``os.urandom``)."""
    return os.urandom(KEY_BYTES)


def _seeded_key(seed: int, purpose: str) -> bytes:
    return hashlib.sha256(f"privmed/{purpose}/{int(seed)}".encode()).digest()


def _open_unit(words: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Words -> float64 uniforms ``(2k + 1) / 2**53`` on (0, 1) from their top 52 bits, into ``out``."""
    bits = out.view(np.uint64)
    np.right_shift(words, np.uint64(64 - _RANDOM_BITS), out=bits)
    bits |= _ONE_BITS
    out -= _UNIT_OFFSET
    return out
