"""Epsilon x seed grids of one method and its utility evaluation, run as Ray tasks.

A sweep trains (or releases) one method at every epsilon of a grid, once per seed, and measures
each release's utility on real test data: a U-Net's Dice for DP-WGAN pairs, a classifier's ROC AUC
for AC-GAN samples and for CADP / DP-GLOW / pixel-noise copies. Each cell is its own run directory
``OUT/cells/eps-E_seed-S/`` (config.json, privacy.json, ... as the method writes it) and ends with
``result.json``, written last: a cell without it is re-run (a GAN resumes from its checkpoint), a
cell with it is skipped.

Every cell is a real release of the private data and is booked in the user's budget ledger: the
GANs book themselves (``DPTrainer``), the local-DP privatizers are reserved and settled here with
the same ledger calls ``privmed privatize`` makes. Epsilon is never computed here: the table reads
it back from each cell's privacy.json. The ``inf`` cells are non-private references (a GAN trained
without DP; for the privatizers the real data itself) and book nothing.

On a multi-node Ray cluster, OUT, the budget ledger and the data must live on a filesystem that every
node sees under the same path.

The package: :mod:`~privmed.sweep.config` (the configuration and its checks), :mod:`~privmed.sweep.cells`
(one cell), :mod:`~privmed.sweep.driver` (the Ray driver) and :mod:`~privmed.sweep.output` (table and plot).
"""

from privmed.sweep.cells import run_cell
from privmed.sweep.config import (
    EVALUATION_DEFAULTS,
    GENERATIVE_METHODS,
    LOCAL_DP_METHODS,
    METHODS,
    METRICS,
    SweepConfig,
    cell_name,
    parse_epsilons,
    parse_seeds,
)
from privmed.sweep.driver import CellEvent, SweepFailed, run_sweep
from privmed.sweep.output import CellFailure, SweepResult, SweepRow, format_epsilon, plot_privacy_utility

__all__ = [
    "EVALUATION_DEFAULTS",
    "GENERATIVE_METHODS",
    "LOCAL_DP_METHODS",
    "METHODS",
    "METRICS",
    "CellEvent",
    "CellFailure",
    "SweepConfig",
    "SweepFailed",
    "SweepResult",
    "SweepRow",
    "cell_name",
    "format_epsilon",
    "parse_epsilons",
    "parse_seeds",
    "plot_privacy_utility",
    "run_cell",
    "run_sweep",
]
