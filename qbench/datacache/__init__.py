"""The dataset cache: where data lives, how it is verified, and how prepared arrays are stored.

One module per concern: :mod:`.location` (cache folders), :mod:`.messages` (what the user is
told), :mod:`.hashing` (digests, verification), :mod:`.atomic` (atomic writes, stale leftovers),
:mod:`.prepared` (prepared ``.npz`` arrays), :mod:`.obtaining` (tools and downloads). This
package re-exports them for plugins that import ``qbench.datacache``.

Layout under :func:`cache_dir` (``$QBENCH_DATA``, default ``~/.cache/qbench``)::

    <cache>/<dataset-name>/                 sources obtained or copied there (tarball, wheel, text files)
    <cache>/<dataset-name>/prepared-<key>.npz   prepared splits, keyed by what produced them

Guarantees:

* Every file is written atomically: into a temporary file in the same folder, flushed and
  fsynced, then ``os.replace``-d into place. A killed preparation leaves at most a
  ``.*.partial`` file that nothing ever reads.
* Prepared arrays are ``.npz`` files (no pickle; loaded with ``allow_pickle=False``) that carry
  their metadata as JSON and their fingerprint; a load recomputes the fingerprint and ignores a
  file that does not match, so a damaged cache is prepared again instead of trusted.
* The fingerprint (:func:`fingerprint`) is a sha256 over the arrays' names, dtypes, shapes and
  bytes plus the JSON metadata (vocabulary, class names): identical prepared data gives the
  identical fingerprint on every machine.

These modules import numpy and tqdm lazily, so plugin modules may import them at start-up.
"""

from __future__ import annotations

from qbench.datacache.atomic import (
    STALE_SECONDS,
    atomic_copy,
    atomic_path,
    atomic_write_bytes,
    sweep_stale,
)
from qbench.datacache.hashing import (
    CHUNK_BYTES,
    HASH_KINDS,
    digest_bytes,
    file_digest,
    git_blob_id,
    verify_bytes,
    verify_file,
)
from qbench.datacache.location import (
    ENV_VAR,
    cache_dir,
    dataset_dir,
    resolve_cache,
)
from qbench.datacache.messages import (
    progress,
    say,
)
from qbench.datacache.obtaining import (
    download,
    npm_pack,
    run_tool,
)
from qbench.datacache.prepared import (
    fingerprint,
    load_or_prepare,
    load_prepared,
    prepared_path,
    save_prepared,
)

__all__ = [
    "CHUNK_BYTES",
    "ENV_VAR",
    "HASH_KINDS",
    "STALE_SECONDS",
    "atomic_copy",
    "atomic_path",
    "atomic_write_bytes",
    "cache_dir",
    "dataset_dir",
    "digest_bytes",
    "download",
    "file_digest",
    "fingerprint",
    "git_blob_id",
    "load_or_prepare",
    "load_prepared",
    "npm_pack",
    "prepared_path",
    "progress",
    "resolve_cache",
    "run_tool",
    "save_prepared",
    "say",
    "sweep_stale",
    "verify_bytes",
    "verify_file",
]
