"""`make demo`: build an example model and data, score them with the real CLI, show results.

Builds (once, into ./demo) a SavedModel of a 64->256->256->10 MLP with fixed random weights
(``benchmarks.build.build_mlp``: ``tf.saved_model.save`` of a ``tf.Module``, outputs
``scores`` and ``embedding``) and four
Parquet shards of 50,000 rows each (``id`` int64, ``x`` 64 float32), then runs
``beamscore score --config configs/local.yaml`` and prints the first predictions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "demo")
ROWS, SHARDS, WIDTH = 200_000, 4, 64


def build_data(directory: str) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    per = ROWS // SHARDS
    for s in range(SHARDS):
        x = rng.normal(size=(per, WIDTH)).astype(np.float32)
        ids = np.arange(s * per, (s + 1) * per, dtype=np.int64)
        table = pa.table({"id": ids, "x": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), WIDTH)})
        pq.write_table(table, os.path.join(directory, f"shard-{s:02d}.parquet"))


def main() -> int:
    os.chdir(ROOT)
    sys.path.insert(0, ROOT)
    from beamscore._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    model, data = os.path.join(DEMO, "model"), os.path.join(DEMO, "data")
    if not os.path.exists(os.path.join(model, "saved_model.pb")):
        print(f"building the example model in {model} ...")
        from benchmarks.build import build_mlp  # the benchmarks' MLP: same seed, same weights

        build_mlp(model)
    if not os.path.isdir(data):
        print(f"writing {ROWS:,} rows of a 64-float column to {data} ...")
        build_data(data)
    beamscore = os.path.join(os.path.dirname(sys.executable), "beamscore")
    subprocess.run([beamscore, "show", model, "--signature", "serving_default"], check=True)
    print()
    start = time.perf_counter()
    code = subprocess.run([beamscore, "score", "--config", "configs/local.yaml"]).returncode
    if code:
        return code
    print(f"  wall time of the score command: {time.perf_counter() - start:.1f}s")

    import numpy as np
    import pyarrow.parquet as pq

    first = pq.read_table(os.path.join(DEMO, "output", "part-00000-00000.parquet"), columns=["id", "scores"])
    print("\nfirst predictions (id, top class, its score):")
    for row_id, scores in zip(first["id"].to_pylist()[:5], first["scores"].to_pylist()[:5], strict=True):
        top = int(np.argmax(scores))
        print(f"  {row_id:>6}  class {top}  {scores[top]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
