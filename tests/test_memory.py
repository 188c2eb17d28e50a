"""utils.memory: freed large blocks are reused instead of mapped again page by page, TensorFlow
keeps its CPU tensors' memory; settings the user made in the environment are left alone; every
script step applies it."""
import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from utils import cli, memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
REPO = Path(__file__).resolve().parents[1]
BLOCK = 64 << 20  # above glibc's largest dynamic mmap threshold (32 MB): always mapped by default

# Run as `python -c CODE keep|default`: with "keep", keep_freed_memory() first, and what it
# changed is in `changed`.
PRELUDE = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from utils.memory import keep_freed_memory
changed = keep_freed_memory() if sys.argv[1] == "keep" else []
"""

# Allocate, touch and free a block twice; print the page faults of the second time.
FAULTS_OF_A_REUSED_BLOCK = PRELUDE + f"""
import ctypes, resource
assert sys.argv[1] == "default" or "malloc" in changed
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
libc.memset.restype = ctypes.c_void_p

def use_block():
    block = libc.malloc({BLOCK})
    libc.memset(block, 1, {BLOCK})
    libc.free(block)

use_block()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
use_block()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


# Whether TensorFlow's CPU allocator is its best-fit one, the one that keeps statistics.
TENSORFLOW_ALLOCATOR = PRELUDE + """
assert "tensorflow" in changed
import tensorflow as tf
tf.ones((256, 256))
try:
    print(tf.config.experimental.get_memory_info("CPU:0")["peak"] > 0)
except ValueError:  # "Allocator stats not available"
    print("plain")
"""


def run_fresh(code: str, mode: str) -> str:
    """Run code in a new Python without any of the memory settings in its environment."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GLIBC_TUNABLES", memory.TF_BFC) and not k.startswith("MALLOC_")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    done = subprocess.run([sys.executable, "-c", code, mode], env=env, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def faults_of_reused_block(mode: str) -> int:
    return int(run_fresh(FAULTS_OF_A_REUSED_BLOCK, mode))


def transparent_hugepages_always() -> bool:
    try:
        return "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not GLIBC, reason="glibc malloc only")
@pytest.mark.skipif(transparent_hugepages_always(), reason="huge pages hide the 4 kB page faults")
def test_freed_block_is_reused_without_page_faults():
    pages = BLOCK // 4096
    assert faults_of_reused_block("default") > pages // 2  # mapped afresh: a fault per page
    assert faults_of_reused_block("keep") < pages // 20


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow")
def test_tensorflow_keeps_its_cpu_memory():
    # TensorFlow's default CPU allocator ("plain") keeps no statistics; one fresh import is enough
    assert run_fresh(TENSORFLOW_ALLOCATOR, "keep") == "True"


def test_malloc_settings_in_the_environment_are_the_users():
    assert not memory.user_chose_malloc_settings({"PATH": "/bin", "GLIBC_TUNABLES": ""})
    assert memory.user_chose_malloc_settings({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert memory.user_chose_malloc_settings({"MALLOC_ARENA_MAX": "2"})
    assert not memory.user_chose_malloc_settings({"GLIBC_TUNABLES": "glibc.rtld.nns=2"})


def test_keep_freed_memory_leaves_user_settings_alone(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=7")
    monkeypatch.setenv(memory.TF_BFC, "false")
    assert memory.keep_freed_memory() == []
    assert os.environ[memory.TF_BFC] == "false"


def test_every_step_command_keeps_freed_memory(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("kept"))

    @cli.step_command()
    def step(s):
        calls.append(s["RUN_NAME"])

    result = CliRunner().invoke(step, ["--set", "RUN_NAME=probe", "--set",
                                       f"RUNS_DIR={tmp_path}"])
    assert result.exit_code == 0, result.output
    assert calls == ["kept", "probe"]
