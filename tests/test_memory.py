"""The allocator settings for large photos: freed tile memory is reused, not faulted in again."""

from __future__ import annotations

import subprocess
import sys

import pytest

from segcam.utils import memory

_LOOP = """
import resource, sys
import numpy as np
from segcam.utils.memory import keep_freed_memory
np.core.multiarray._set_madvise_hugepage(False)  # as the command line does: pages counted at 4 KB
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for _ in range(3):  # warm up: the heap grows once
    a = [np.ones(6_000_000, np.float32) for _ in range(4)]  # 4 x 24 MB, as a tile's tensors
    del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    a = [np.ones(6_000_000, np.float32) for _ in range(4)]
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(memory._glibc() is None, reason="glibc's allocator only (elsewhere both calls do nothing)")
def test_freed_tile_memory_is_reused_instead_of_faulted_in_again() -> None:
    faults = {}
    for mode in ("default", "keep"):
        out = subprocess.run([sys.executable, "-c", _LOOP, mode], capture_output=True, text=True, check=True)
        faults[mode] = int(out.stdout.split()[-1])
    # 20 rounds of 96 MB are ~470k pages when every round is faulted in again
    assert faults["default"] > 100_000, faults
    assert faults["keep"] < faults["default"] / 10


def test_release_gives_back_and_never_fails() -> None:
    assert isinstance(memory.release_freed_memory(), bool)
