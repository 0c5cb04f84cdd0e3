"""SavedModels with ragged and sparse signature inputs, and their inputs as Parquet and TFRecord.

- :func:`save_tft_model`: a TFT-style transform graph over one dict of features ``inputs``
  (so the SignatureDef inputs are ``inputs``, ``inputs_1``, ... :data:`TFT_KEYS`): ``words`` (``tf.SparseTensorSpec``
  [None, None] string) looked up in a vocabulary file (an asset, as TFT writes them; unknown
  words get id 4), ``counts`` (``tf.SparseTensorSpec`` [None, 4] int64, declared width) ->
  ``id_sum`` (sum of the word ids per row, int64), ``known`` (how many words of the row are in
  the vocabulary, float32) and ``count_total`` (sum of the counts per row, int64).
- :func:`save_ragged_embedding_model`: a recommendation-style model: ``ids``
  (``tf.RaggedTensorSpec`` [None, None] int64, item ids of any number per row) embedded and
  mean-pooled (an empty row pools to zeros), plus a dense ``x`` float32 [None, 3] -> ``score``
  float32 [None, 2].
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

VOCAB = ["apple", "banana", "cherry", "date"]


class TftModule(tf.Module):
    def __init__(self, vocab_file: str) -> None:
        super().__init__()
        init = tf.lookup.TextFileInitializer(
            vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER
        )
        self.table = tf.lookup.StaticVocabularyTable(init, num_oov_buckets=1)

    @tf.function(
        input_signature=[
            {"words": tf.SparseTensorSpec([None, None], tf.string), "counts": tf.SparseTensorSpec([None, 4], tf.int64)}
        ]
    )
    def transform(self, inputs):
        words, counts = inputs["words"], inputs["counts"]
        ids = tf.sparse.map_values(self.table.lookup, words)
        rows = words.dense_shape[0]
        known = tf.cast(ids.values < len(VOCAB), tf.float32)
        return {
            "id_sum": tf.math.unsorted_segment_sum(ids.values, ids.indices[:, 0], rows),
            "known": tf.math.unsorted_segment_sum(known, ids.indices[:, 0], rows),
            "count_total": tf.math.unsorted_segment_sum(counts.values, counts.indices[:, 0], counts.dense_shape[0]),
        }


#: the SignatureDef keys TensorFlow gives the TFT model's dict argument ``inputs``: its entries
#: in sorted key order, each sparse one's indices, values and dense shape
TFT_KEYS = {"counts": ("inputs", "inputs_1", "inputs_2"), "words": ("inputs_3", "inputs_4", "inputs_5")}


def save_tft_model(path: str) -> str:
    os.makedirs(path + ".assets", exist_ok=True)
    vocab = os.path.join(path + ".assets", "vocab.txt")
    with open(vocab, "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    module = TftModule(vocab)
    tf.saved_model.save(module, path, signatures={"serving_default": module.transform})
    return path


class RaggedEmbedding(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(11)
        self.table = tf.Variable(rng.normal(size=(50, 4)).astype(np.float32))
        self.w = tf.Variable(rng.normal(size=(7, 2)).astype(np.float32))

    @tf.function(input_signature=[tf.RaggedTensorSpec([None, None], tf.int64), tf.TensorSpec([None, 3], tf.float32)])
    def serve(self, ids, x):
        pooled = tf.reduce_mean(tf.gather(self.table, ids), axis=1)  # ragged mean: empty rows give NaN
        pooled = tf.where(tf.math.is_nan(pooled), tf.zeros_like(pooled), pooled)
        return {"score": tf.matmul(tf.concat([pooled, x], axis=1), self.w)}


def save_ragged_embedding_model(path: str) -> str:
    module = RaggedEmbedding()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path
