"""The C allocator's handling of freed memory, for the large photos of a survey.

A 24-megapixel photo is explained in 1024 px tiles whose tensors (1-30 MB each) are freed after every tile
and asked for again by the next. glibc's defaults make both of the two obvious outcomes costly: with its
dynamic thresholds, a freed block at the top of the heap is given back to the system as soon as 64 MB are
free there, so every tile faults its working set in again (measured: 0.74 -> 1.0 s per B16 tile, 3x the page
faults); keeping everything means the tiles' fragments stay resident while the photo-sized arrays of the next
stage are allocated beside them (measured: 0.4-0.8 GB more peak RSS at 6000x4000).

:func:`keep_freed_memory` fixes the thresholds so that freed tile memory stays for the next tile, and
:func:`release_freed_memory` hands what is free back at the end of a stage. Both do nothing where the C
library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["keep_freed_memory", "no_huge_pages", "release_freed_memory"]

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_PR_SET_THP_DISABLE = 41  # prctl.h
#: Blocks up to this size come from the heap: every tensor of a 1024 px tile (glibc's own dynamic threshold
#: stops at this value on 64-bit systems); photo-sized arrays above it are mapped and unmapped whole.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap kept for reuse (a B16 tile's working set is about 0.3 GB).
TRIM_THRESHOLD = 1024 * 1024 * 1024
#: The heap grows (and is trimmed) in steps of this much more than asked: without it a 6000x4000 explain
#: faulted 3.7 M pages in, with it 0.9 M (55 -> 43 s, the same peak RSS).
TOP_PAD = 256 * 1024 * 1024


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
        return lib if lib is not None and hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt") else None
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Fix glibc's thresholds (see the module docstring) for the rest of the process; True if it took effect.

    For a process that explains large photos (the ``segcam`` command line); a library user decides for their own
    process.
    """
    lib = _glibc()
    if lib is None:
        return False
    return all([lib.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD), lib.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                lib.mallopt(_M_TOP_PAD, TOP_PAD)])


def no_huge_pages() -> None:
    """No transparent huge pages for this process and its children (Linux), nor for numpy's arrays.

    A survey's photo-sized accumulators and masks are written sparsely (near cracks, tile by tile); with 2 MB
    pages every sparse write makes a whole huge page resident, and a 24 MP survey's peak memory then depends
    on how many huge pages the kernel has free (1.7 GB or 2.3 GB for the same photo).
    """
    import numpy as np

    setter = getattr(np.core.multiarray, "_set_madvise_hugepage", None)
    if setter is not None:
        setter(False)
    lib = _glibc()
    if lib is not None and hasattr(lib, "prctl"):
        lib.prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0)  # refused on old kernels: numpy's setting still holds


def release_freed_memory() -> bool:
    """Give the heap's free memory back to the system (``malloc_trim``); True if any was given back."""
    lib = _glibc()
    return bool(lib.malloc_trim(0)) if lib is not None else False
