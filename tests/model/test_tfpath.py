"""``tf_readable``: a link without glob characters for model paths TensorFlow would match as patterns."""

from __future__ import annotations

import os

import tensorflow as tf

from beamscore.model.tfpath import tf_readable


def test_plain_paths_are_kept_and_glob_paths_get_one_link(tmp_path):
    plain = tmp_path / "model"
    plain.mkdir()
    assert tf_readable(str(plain)) == str(plain)
    odd = tmp_path / "model[1]"
    odd.mkdir()
    (odd / "f.txt").write_text("x")
    link = tf_readable(str(odd))
    assert link != str(odd) and not set("[]?*") & set(link)
    assert os.path.realpath(link) == str(odd) and tf_readable(str(odd)) == link  # reused
    assert tf.io.gfile.glob(os.path.join(link, "f.*")) == [os.path.join(link, "f.txt")]
    assert tf.io.gfile.glob(os.path.join(str(odd), "f.*")) == []  # what TensorFlow does to the path itself
