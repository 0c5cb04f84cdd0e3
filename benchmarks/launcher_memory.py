"""By hand, not in the suite: how much memory the launcher and the worker processes of a local
multi-process job hold, for an embedding model of a given size.

    PYTHONPATH=. python -m benchmarks.launcher_memory --mb 100 --workers 2

Builds (in a child process: a child's ``ru_maxrss`` starts at its parent's size) a SavedModel
whose one variable is an embedding table of about ``--mb`` MB and a Parquet file of ids, runs
``beamscore score`` with ``--direct_running_mode=multi_processing`` and samples the RSS of the
launcher and of every process under it every 0.1 s (psutil). Prints the launcher's peak, the
launcher's RSS while the workers score (median of the samples once a worker has started), the
workers' peaks, the peak of the sum and the job's wall time; and, for comparison, a plain script that loads the
model and scores the same rows (peak RSS). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

BUILD = """
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq, tensorflow as tf
path, data, mb = sys.argv[1], sys.argv[2], float(sys.argv[3])
dim = 64
rows = int(mb * 1e6 / 4 / dim)
class Embed(tf.Module):
    def __init__(self):
        self.table = tf.Variable(np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32))
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="ids")])
    def serve(self, ids):
        return {"vec": tf.gather(self.table, ids)}
m = Embed()
tf.saved_model.save(m, path, signatures={"serving_default": m.serve})
ids = np.random.default_rng(1).integers(0, rows, size=20000)
pq.write_table(pa.table({"ids": ids}), data, row_group_size=2000)
"""

PLAIN = """
import resource, sys, numpy as np, pyarrow.parquet as pq, tensorflow as tf
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
ids = pq.read_table(sys.argv[2])["ids"].to_numpy()
for i in range(0, len(ids), 4096):
    fn(ids=tf.constant(ids[i:i + 4096]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def main() -> int:
    import psutil

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="size of the embedding table (MB)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-trial", action="store_true", help="pass --no-trial (the launcher never loads the model)")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="beamscore-memory-")
    model, data = os.path.join(root, "model"), os.path.join(root, "ids.parquet")
    subprocess.run([sys.executable, "-c", BUILD, model, data, str(args.mb)], check=True, capture_output=True)
    cmd = [sys.executable, "-m", "beamscore", "score", "--model", model, "--input", data, "--output"]
    cmd += [os.path.join(root, "out"), "--no-progress", "--rows-per-unit", "2000"]
    cmd += ["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"]
    cmd += ["--no-trial"] if args.no_trial else []
    began = time.perf_counter()
    launcher = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_launcher = peak_total = 0
    during: list[int] = []
    workers: dict[int, int] = {}
    trials: set[int] = set()  # the trial call's own process (beamscore.pipelines.trial_apart)
    while launcher.poll() is None:
        try:
            own = launcher.memory_info().rss
            kids = launcher.children(recursive=True)
        except psutil.Error:
            break
        children = {}
        for c in kids:
            try:  # a child may end between the listing and this
                children[c.pid] = c.memory_info().rss
                if c.pid not in trials and "trial_apart" in " ".join(c.cmdline()):
                    trials.add(c.pid)
            except psutil.Error:
                continue
        peak_launcher = max(peak_launcher, own)
        busy = {pid: rss for pid, rss in children.items() if rss > 200 << 20}  # workers with TF loaded
        for pid, rss in busy.items():
            workers[pid] = max(workers.get(pid, 0), rss)
        if set(busy) - trials:
            during.append(own)
        peak_total = max(peak_total, own + sum(children.values()))
        time.sleep(0.1)
    wall = time.perf_counter() - began
    plain = subprocess.run([sys.executable, "-c", PLAIN, model, data], check=True, capture_output=True, text=True)
    mib = 1 << 20
    trial = "without" if args.no_trial else "with"
    print(
        f"embedding {args.mb:g} MB, {args.workers} worker processes, {trial} the trial call, exit {launcher.returncode}"
    )
    print(f"launcher peak RSS:                   {peak_launcher / mib:,.0f} MiB")
    if during:
        print(f"launcher RSS while workers score:    {statistics.median(during) / mib:,.0f} MiB (median)")
    for pid, rss in sorted(workers.items()):
        what = "trial call" if pid in trials else "worker"
        print(f"{what + ' ' + str(pid) + ' peak RSS:':<37}{rss / mib:,.0f} MiB")
    print(f"peak of launcher + workers:          {peak_total / mib:,.0f} MiB")
    print(f"plain script (load + score) peak:    {int(plain.stdout.strip()):,} MiB")
    print(f"job wall time:                       {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
