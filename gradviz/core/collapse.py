"""Collapse a module's uses (or blocks of consecutive uses) into one box each: a long unrolled graph in brief.

An RNN cell unrolled 1,700 steps is 1,700 uses of one module. `collapse_groups` gives every node of a
module use (``node.module`` and ``node.use`` set) the group of its block of `block` consecutive uses:
``block=1`` draws each use (time step) as one box, ``block=10`` each ten steps. Nodes outside any
module (leaves, inputs, the loss) stay as they are. The layout draws the edges between groups, so a
box shows the gradients going in and out of its uses; the Scene sums its members' states like a rolled
node's. The recording is unchanged.
"""
from __future__ import annotations

import numpy as np

from .recording import Recording

__all__ = ["collapse_groups", "parse_block", "auto_block", "block_key", "BOXES"]

BOXES = 100  # an automatic block size draws a module's uses as about this many boxes


def parse_block(value) -> int:
    """A block of uses: ``"use"`` (one use per box) or a positive number of consecutive uses."""
    if isinstance(value, str) and value.strip().lower() in ("use", "uses", "step", "steps"):
        return 1
    try:
        block = int(value)
    except (TypeError, ValueError):
        block = 0
    if block < 1:
        raise ValueError(f"collapse must be 'use' or a positive number of uses per box, not {value!r}")
    return block


def auto_block(rec: Recording) -> int:
    """A block size that draws the most used module as about `BOXES` boxes (1: one box per use)."""
    uses = max((n.uses or 1 for n in rec.nodes if n.module is not None), default=1)
    return max(1, -(-uses // BOXES))


def block_key(title: tuple, block: int) -> tuple:
    """The key of the block a collapsed box stands for (its `Layout.titles` entry): (module, block index)."""
    return (title[0], (int(title[1]) - 1) // block)


def collapse_groups(rec: Recording, block, expanded=()) -> tuple[np.ndarray, dict[int, tuple]]:
    """Group id per node, with each block of `block` uses of a module as one group.

    A block whose key (`block_key`: module, block index) is in `expanded` is drawn node by node,
    expanded in place.

    Returns
    -------
    group_of : numpy.ndarray of int, shape (N,)
    titles : dict of int to tuple
        For every group that stands for several nodes: ``(module, first use, last use, nodes)``.
    """
    block = parse_block(block)
    expanded = set(expanded)
    key_of: dict = {}
    group = np.empty(len(rec.nodes), dtype=np.int64)
    span: dict = {}
    count: dict = {}
    for node in rec.nodes:
        if node.module is not None and node.use is not None and (node.uses or 1) > 1:
            b = (int(node.use) - 1) // block
            key = ("m", node.module, b)
            if (node.module, b) in expanded:
                key = ("n", node.id)
            else:
                lo, hi = span.get(key, (node.use, node.use))
                span[key] = (min(lo, node.use), max(hi, node.use))
        else:
            key = ("n", node.id)
        gid = key_of.get(key)
        if gid is None:
            gid = key_of[key] = len(key_of)
        group[node.id] = gid
        count[gid] = count.get(gid, 0) + 1
    titles = {}
    for key, gid in key_of.items():
        if key[0] == "m" and count[gid] > 1:
            lo, hi = span[key]
            titles[gid] = (str(key[1]), int(lo), int(hi), count[gid])
    return group, titles
