"""LocalEmbedder's memory stays flat however many texts come (measured in a
fresh process: the peak RSS of one call, above the RSS before it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.local_model, pytest.mark.slow]

#: Peak RSS above the RSS before the call, for ``n`` then ``4 * n`` new texts of
#: 20 to 80 tokens, after a warm-up call (the runtime's arena at its size);
#: blocks of ``block`` texts, so a few blocks make a call.
CODE = """
import json, sys
import numpy as np
from embedtasks.embedders._onnx import _runtime

n, block = int(sys.argv[1]), int(sys.argv[2])
_runtime.BLOCK_TEXTS = block
model = _runtime.load("all-MiniLM-L6-v2", precision="int8")
words = np.array("the of a river bank tax law cat sat on mat report year court "
                 "vote music new old light dark stone water city field".split())
rng = np.random.default_rng(0)

def texts(count):
    return [f"note {rng.integers(10**9)}: " + " ".join(rng.choice(words, k))
            for k in rng.integers(15, 75, count)]

def kb(key):
    status = open("/proc/self/status").read()
    return int(status.split(key + ":")[1].split()[0])

def growth(count):
    batch = texts(count)
    before = kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) restarts from the RSS now
    _runtime.encode(model, batch, batch_size=64)
    return (kb("VmHWM") - before) / 1024

_runtime.encode(model, texts(min(n, block)), batch_size=64)
print(json.dumps([growth(n), growth(4 * n)]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_peak_memory_does_not_grow_with_the_number_of_texts():
    n, block = 300, 150
    result = subprocess.run(
        [sys.executable, "-c", CODE, str(n), str(block)],
        capture_output=True,
        text=True,
        check=True,
    )
    small, large = json.loads(result.stdout)
    # Four times the texts may add their output rows (384 float32 each) and
    # allocator noise, not the working memory of the extra 3 * n texts.
    output_mb = 3 * n * 384 * 4 / 2**20
    assert large - small <= output_mb + 3, (small, large)
