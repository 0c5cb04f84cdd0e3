"""Which input format a file is: from its name, else from its first bytes.

Names first: ``.parquet``, ``.tfrecord[.gz]``, ``.npz``, ``.npy``, ``.feather``, ``.orc`` ... also before a shard
suffix, as TensorFlow and Beam's ``WriteToTFRecord`` name shards
(``train.tfrecord-00003-of-00010``). A name that says nothing (``data-00000-of-00001``,
``part-0``) costs one read of the file's first 4 KiB: Parquet starts with ``PAR1``, ``.npy``
with ``\\x93NUMPY``, ``.npz`` is a zip, and a TFRecord starts with a record length whose
masked CRC32C follows it (checked after inflating, for GZIP and ZLIB files), which no other
file does by chance.
"""

from __future__ import annotations

import re
import zlib

from beamscore import fs as bfs

__all__ = ["SUFFIXES", "compressed_head", "format_from_bytes", "format_from_name", "format_of", "looks_like_text"]

#: file suffix -> format name
SUFFIXES = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".tfrecord": "tfrecord",
    ".tfrecord.gz": "tfrecord",
    ".tfrecords": "tfrecord",
    ".tfrecords.gz": "tfrecord",
    ".npz": "npz",
    ".npy": "npy",
    ".feather": "feather",
    ".arrow": "feather",
    ".ipc": "feather",
    ".orc": "orc",
}
_SHARD = re.compile(r"-\d+-of-\d+$")
_HEAD = 4096


def format_from_name(path: str) -> str | None:
    """The format a file's name says, with or without a shard suffix; ``None`` if it says none."""
    for name in (path, _SHARD.sub("", path)):
        for suffix, fmt in SUFFIXES.items():
            if name.endswith(suffix):
                return fmt
    return None


def format_from_bytes(head: bytes) -> str | None:
    """The format of a file that starts with ``head``; ``None`` when it is none of ours."""
    from beamscore.io.tfrecord import WBITS, detect_compression, is_record_start  # only when sniffing

    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "npz"
    if is_record_start(head):
        return "tfrecord"
    if head.startswith(b"ARROW1"):
        return "feather"
    if head.startswith(b"ORC"):
        return "orc"
    codec = detect_compression(head)
    if codec == "none":
        return None
    try:
        inflated = zlib.decompressobj(WBITS[codec]).decompress(head, 12)
    except zlib.error:
        return None
    return "tfrecord" if is_record_start(inflated) else None


def format_of(path: str) -> str | None:
    """The format of the file at ``path`` (any URL): its name, else its first bytes."""
    fmt = format_from_name(path)
    if fmt is not None:
        return fmt
    fs, local = bfs.filesystem(path)
    try:
        with fs.open(local, "rb") as f:
            head = f.read(_HEAD)
    except (OSError, ValueError):
        return None
    return format_from_bytes(head)


def compressed_head(path: str) -> str | None:
    """``GZIP`` or ``ZLIB`` when the file at ``path`` starts as such a stream (what cannot be
    told from its name or bytes: then only TFRecord is read compressed), else ``None``."""
    from beamscore.io.tfrecord import WBITS, detect_compression

    fs, local = bfs.filesystem(path)
    try:
        with fs.open(local, "rb") as f:
            codec = detect_compression(f.read(12))
    except (OSError, ValueError):
        return None
    return codec.upper() if codec in WBITS else None


def looks_like_text(head: bytes) -> bool:
    """Whether a file's first bytes are printable text (a CSV or JSON file among the inputs),
    for the refusals that say what a file is instead of the format asked for."""
    return bool(head) and all(32 <= b < 127 or b in b"\t\r\n" for b in head)
