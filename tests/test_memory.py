"""genlib.core.memory: freed blocks kept for the next step (glibc only), checked in fresh processes
since malloc's settings hold for the whole process. What the settings do is read from glibc's own
accounts (mallinfo2), which are exact; the page faults they save in training vary from run to run
with the heap's layout and are measured by benchmarks/page_faults.py instead."""
import ctypes
import subprocess
import sys
import textwrap

import pytest

from genlib.core.memory import keep_freed_memory

# Where a 24 MiB tensor comes from, and where its memory is once freed, in MiB: mapped on its own
# (mmap) or taken from malloc's heap; printed as "mapped heap mapped_after heap_after".
ONE_TENSOR = textwrap.dedent("""
    import ctypes, sys, torch
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                          "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    if sys.argv[1] == "keep":
        from genlib.core.memory import keep_freed_memory
        assert keep_freed_memory()
    def mib():
        info = libc.mallinfo2()
        return info.hblkhd / 2**20, info.arena / 2**20
    mapped0, heap0 = mib()
    tensor = torch.ones(6 * 2**20)
    mapped1, heap1 = mib()
    del tensor
    mapped2, heap2 = mib()
    print(mapped1 - mapped0, heap1 - heap0, mapped2 - mapped0, heap2 - heap0)
""")


def where_a_tensor_lives(mode: str) -> list[float]:
    done = subprocess.run([sys.executable, "-c", ONE_TENSOR, mode], capture_output=True, text=True, check=True)
    return [float(word) for word in done.stdout.split()[-4:]]


def has_mallinfo2() -> bool:
    return hasattr(ctypes.CDLL(None), "mallinfo2")  # glibc 2.33 and later


def test_keep_freed_memory_is_asked_once_and_says_whether_it_took():
    assert keep_freed_memory() is keep_freed_memory()
    assert isinstance(keep_freed_memory(), bool)


@pytest.mark.skipif(not keep_freed_memory() or not has_mallinfo2(),
                    reason="the C library has no mallopt or no mallinfo2 (not glibc, or glibc before 2.33)")
def test_a_kept_block_comes_from_the_heap_and_stays_there_once_freed():
    mapped, heap, mapped_after, heap_after = where_a_tensor_lives("default")
    assert mapped >= 24 and heap < 1 and mapped_after < 1 and heap_after < 1  # mapped, and handed back
    mapped, heap, mapped_after, heap_after = where_a_tensor_lives("keep")
    assert mapped < 1 and heap >= 24 and mapped_after < 1 and heap_after >= 24  # from the heap, and kept
