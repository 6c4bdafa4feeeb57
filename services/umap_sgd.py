"""The SGD epoch UMAP runs when seeded (``umap.layouts._optimize_layout_euclidean_single_epoch``,
umap-learn 0.5.12, pinned), as the topic build runs it: the same edge sampling, negative samples, random
streams, gradients and clipping, in float32 arithmetic with one power per positive edge instead of two
(UMAP computes them in float64 on float32 coordinates), compiled without the GIL so the clustering and the
map's layout run at once on two cores.

A seeded UMAP (ours is) optimises on one thread: its parallel epoch is not reproducible. Most of a topic
build's time is this epoch (an 8,000-item sample: 200 epochs, ~2.6 s as UMAP ships it, ~1.8 s here).
Results stay reproducible, run to run, and agree with UMAP's own epoch to float32 rounding on one step;
over hundreds of epochs SGD amplifies rounding, so the coordinates differ as they do between machines, and
the topics are as good (NMI over seeds: see the README's topic quality notes).

Importing this module imports umap and numba: import it where a UMAP runs, not at start-up."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from umap.utils import tau_rand_int

logger = logging.getLogger(__name__)

_UMAP_EPOCH = "_nb_optimize_layout_euclidean_single_epoch"  # what umap.layouts calls when seeded
_install_lock = threading.Lock()
_compiled: Any = None
_users = 0  # topic builds running with this epoch in place
_umaps_own: Any = None


def _epoch(  # noqa: PLR0913 - UMAP calls it with exactly these arguments
    head_embedding: Any,
    tail_embedding: Any,
    head: Any,
    tail: Any,
    n_vertices: int,
    epochs_per_sample: Any,
    a: float,
    b: float,
    rng_state_per_sample: Any,
    gamma: float,
    dim: int,
    move_other: bool,
    alpha: float,
    epochs_per_negative_sample: Any,
    epoch_of_next_negative_sample: Any,
    epoch_of_next_sample: Any,
    n: int,
    densmap_flag: bool,
    dens_phi_sum: Any,
    dens_re_sum: Any,
    dens_re_cov: float,
    dens_re_std: float,
    dens_re_mean: float,
    dens_lambda: float,
    dens_R: Any,
    dens_mu: Any,
    dens_mu_tot: float,
) -> None:
    if densmap_flag:
        raise ValueError("densMAP is not supported by this SGD epoch")
    one = np.float32(1.0)
    clip = np.float32(4.0)
    af = np.float32(a)
    bf = np.float32(b)
    step = np.float32(alpha)
    attract = np.float32(-2.0 * a * b)
    repel = np.float32(2.0 * gamma * b)
    for i in range(epochs_per_sample.shape[0]):
        if epoch_of_next_sample[i] > n:
            continue
        j = head[i]
        current = head_embedding[j]
        other = tail_embedding[tail[i]]
        dist_squared = np.float32(0.0)
        for d in range(dim):
            diff = current[d] - other[d]
            dist_squared += diff * diff
        grad_coeff = np.float32(0.0)
        if dist_squared > 0.0:
            power = dist_squared**bf  # d^b; d^(b-1) = d^b / d
            grad_coeff = attract * (power / dist_squared) / (af * power + one)
        for d in range(dim):
            grad_d = min(max(grad_coeff * (current[d] - other[d]), -clip), clip)
            current[d] += grad_d * step
            if move_other:
                other[d] -= grad_d * step
        epoch_of_next_sample[i] += epochs_per_sample[i]

        n_neg_samples = int((n - epoch_of_next_negative_sample[i]) / epochs_per_negative_sample[i])
        for _p in range(n_neg_samples):
            k = tau_rand_int(rng_state_per_sample[j]) % n_vertices
            other = tail_embedding[k]
            dist_squared = np.float32(0.0)
            for d in range(dim):
                diff = current[d] - other[d]
                dist_squared += diff * diff
            if dist_squared > 0.0:
                grad_coeff = repel / ((np.float32(0.001) + dist_squared) * (af * dist_squared**bf + one))
                for d in range(dim):
                    current[d] += min(max(grad_coeff * (current[d] - other[d]), -clip), clip) * step
        epoch_of_next_negative_sample[i] += n_neg_samples * epochs_per_negative_sample[i]


def compiled_epoch() -> Any:
    """The epoch compiled (once per process; cached on disk by numba when it can write its cache folder:
    later processes skip the ~3 s compile)."""
    global _compiled
    if _compiled is None:
        import numba

        try:
            _compiled = numba.njit(_epoch, fastmath=True, nogil=True, cache=True)
        except RuntimeError:  # numba found no writable cache folder: compile in every process
            _compiled = numba.njit(_epoch, fastmath=True, nogil=True)
    return _compiled


@contextmanager
def in_use() -> Iterator[bool]:
    """While inside, seeded UMAPs of this process run this epoch (yields whether they do); when the last
    user leaves, UMAP's own epoch is back, so a BERTopic baseline fitted later in the same process is
    BERTopic as shipped. Should a umap-learn release rename the function it calls, UMAP runs with its
    own epoch (holding the GIL: the clustering and the map then run one after the other)."""
    global _users, _umaps_own
    from umap import layouts

    with _install_lock:
        if getattr(layouts, _UMAP_EPOCH, None) is None:
            logger.warning("umap.layouts changed: topic builds use UMAP's own SGD epoch")
            active = False
        else:
            if _users == 0:
                _umaps_own = getattr(layouts, _UMAP_EPOCH)
                setattr(layouts, _UMAP_EPOCH, compiled_epoch())
            _users += 1
            active = True
    try:
        yield active
    finally:
        if active:
            with _install_lock:
                _users -= 1
                if _users == 0:
                    setattr(layouts, _UMAP_EPOCH, _umaps_own)
                    _umaps_own = None
