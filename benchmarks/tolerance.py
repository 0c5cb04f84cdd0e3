"""How far TensorFlow's CPU results move with the batch size: the numbers behind tests/scores.py.

Scores the test models in batches of 1, 3, 4, 40 and 4096 and compares each output with one
direct call of all 8,200 rows. Run it under each oneDNN setting on the machine in question:

    TF_ENABLE_ONEDNN_OPTS=0 .venv/bin/python benchmarks/tolerance.py /tmp/tol-models /tmp/tol0.npz
    TF_ENABLE_ONEDNN_OPTS=1 .venv/bin/python benchmarks/tolerance.py /tmp/tol-models /tmp/tol1.npz
"""

import os
import sys

sys.path.insert(0, "tests")
import builders
import job_models
import numpy as np
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port


class Foreign(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
    def vec(self, x):
        return {"s": tf.linalg.matvec(x, tf.range(1.0, 9.0))}


class MLP(tf.Module):  # DESIGN.md's 64->256->256->10
    def __init__(self):
        rng = np.random.default_rng(1)
        self.ws = [
            tf.Variable((rng.normal(size=s) / np.sqrt(s[0])).astype(np.float32))
            for s in [(64, 256), (256, 256), (256, 10)]
        ]

    @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="x")])
    def serve(self, x):
        h = tf.nn.relu(x @ self.ws[0])
        h = tf.nn.relu(h @ self.ws[1])
        return {"y": tf.nn.softmax(h @ self.ws[2]), "logits": h @ self.ws[2]}


root = sys.argv[1]
N = 8200
if not os.path.exists(root + "/done"):
    os.makedirs(root, exist_ok=True)
    builders.save_two_signature_model(root + "/two_sig")
    builders.save_keras_model(root + "/keras")
    builders.save_image_model(root + "/image")
    m = Foreign()
    tf.saved_model.save(m, root + "/foreign", signatures={"vec": m.vec})
    m = MLP()
    tf.saved_model.save(m, root + "/mlp", signatures={"serving_default": m.serve})
    job_models.build_all(root)
    open(root + "/done", "w").close()
rng = np.random.default_rng(0)
cases = [
    ("two_sig", "serving_default", "x", (4,)),
    ("two_sig", "embed", "x", (4,)),
    ("keras", "serve", "features", (4,)),
    ("image", "serving_default", "image", (8, 8, 3)),
    ("foreign", "vec", "x", (8,)),
    ("mlp", "serving_default", "x", (64,)),
    ("raising", "serving_default", "x", (4,)),
]
res = {}
outs = {}
for name, sig, key, shape in cases:
    fn = tf.saved_model.load(root + "/" + name).signatures[sig]
    x = rng.normal(size=(N, *shape)).astype(np.float32)
    ref = {k: v.numpy() for k, v in fn(**{key: tf.constant(x)}).items()}
    for b in (1, 3, 4, 40, 4096):
        parts = [fn(**{key: tf.constant(x[i : i + b])}) for i in range(0, N, b)]
        for k, want in ref.items():
            got = np.concatenate([p[k].numpy() for p in parts])
            outs[f"{name}.{sig}.{k}.{b}"] = got
            if want.dtype.kind != "f":
                assert np.array_equal(got, want)
                continue
            d = np.abs(got.astype(np.float64) - want)
            mag = np.abs(want.astype(np.float64))
            rel = np.where(mag > 0, d / np.maximum(mag, 1e-30), 0)
            need_rtol = float(np.max(np.maximum(d - 1e-6, 0) / np.maximum(mag, 1e-30)))
            res[f"{name}.{sig}.{k}[{want.dtype}] b={b}"] = (
                float(d.max()),
                float(rel[mag > 1e-3].max()) if (mag > 1e-3).any() else 0.0,
                need_rtol,
                int((d > 0).sum()),
            )
    for k, want in ref.items():
        outs[f"{name}.{sig}.{k}.ref"] = want
np.savez(sys.argv[2], **outs)
print("ONEDNN", os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "onednn enabled:", _pywrap_util_port.IsMklEnabled())
for k, v in res.items():
    print(f"{k:50s} maxabs={v[0]:.2e} maxrel(|w|>1e-3)={v[1]:.2e} rtol_needed(atol=1e-6)={v[2]:.2e} ndiff={v[3]}")
