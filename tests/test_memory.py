"""genlib.core.memory: freed blocks kept for the next step (glibc only), checked in fresh processes
since malloc's settings hold for the whole process."""
import subprocess
import sys
import textwrap

import pytest

from genlib.core.memory import keep_freed_memory

# Ten written 4 MiB tensors per round, all freed at the end of it, as a training step does; prints
# the page faults of ten rounds after two warm-up rounds.
ROUNDS = textwrap.dedent("""
    import resource, sys, torch
    torch.set_num_threads(1)
    if sys.argv[1] == "keep":
        from genlib.core.memory import keep_freed_memory
        assert keep_freed_memory()
    def rounds(n):
        for _ in range(n):
            blocks = [torch.ones(2**20) for _ in range(10)]
            del blocks
    rounds(2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    rounds(10)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def test_keep_freed_memory_is_asked_once_and_says_whether_it_took():
    assert keep_freed_memory() is keep_freed_memory()
    assert isinstance(keep_freed_memory(), bool)


@pytest.mark.skipif(not keep_freed_memory(), reason="the C library has no mallopt (not glibc)")
def test_kept_memory_saves_the_page_faults_of_a_step_s_fresh_tensors():
    default, kept = page_faults("default"), page_faults("keep")
    # glibc's default hands back some of those 40 MiB (1,024 pages of 4 KiB per tensor): 1,024 to
    # 11,232 faults in 20 runs here
    assert default >= 1000
    assert kept < 100
