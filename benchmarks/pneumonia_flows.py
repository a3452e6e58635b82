"""Train the flows the PneumoniaMNIST benchmarks privatize and score with, on the public half only.

- ``cinn``: a conditional INN (Glow couplings, conditioned on the class) for CADP (seed 002);
- ``glow-mixture``: an unconditional Glow on all public images, for DP-GLOW and as p(x) (seed 003);
- ``glow-normal``: the same Glow on the public normal images only, as p(x | normal) (seed 003, App. A).

Runs land in benchmarks/runs/NAME (ignored by git); an interrupted run resumes from its checkpoint.

    .venv/bin/python benchmarks/pneumonia_flows.py --epochs 10
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from pneumonia_common import DEFAULT_DATA, FLOW_NAMES, ensure_flow, flow_training_set, load_pneumonia, public_private_split
from privmed.models.flows import ConditionalINN, Glow, InvertibleFlow

IMAGE_SHAPE = (1, 28, 28)


def make_flow(name: str, hidden_channels: int, depth: int, seed: int) -> InvertibleFlow:
    """The benchmark's flow for ``name``: two levels (28 -> 14 -> 7), ``depth`` steps per level."""
    if name == "cinn":
        return ConditionalINN(IMAGE_SHAPE, n_classes=2, levels=2, depth=depth, hidden_channels=hidden_channels, coupling="glow", seed=seed)
    return Glow(IMAGE_SHAPE, levels=2, depth=depth, hidden_channels=hidden_channels, coupling="glow", seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--flows", nargs="+", default=list(FLOW_NAMES), choices=FLOW_NAMES)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--normal-epochs", type=int, default=None, help="epochs for glow-normal (fewer images); default 2x --epochs")
    parser.add_argument("--hidden-channels", type=int, default=32)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)

    train, _ = load_pneumonia(args.data)
    public, _ = public_private_split(train, seed=args.seed)
    for name in args.flows:
        data = flow_training_set(name, public)
        epochs = (args.normal_epochs or 2 * args.epochs) if name == "glow-normal" else args.epochs
        started = time.perf_counter()
        ensure_flow(name, make_flow(name, args.hidden_channels, args.depth, args.seed), data, epochs, seed=args.seed)
        logging.info("%s: %d images, %d epochs, ready after %.0f s", name, len(data), epochs, time.perf_counter() - started)


if __name__ == "__main__":
    main()
