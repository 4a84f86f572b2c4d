"""The spool directory: wiped at every start (G7: no residue from a previous run).

Segments are encoded and uploaded from memory; the spool will hold sealed segments only
while uploads fail (a later step). Whatever is found in it at start-up is removed. Symbolic
links are removed as links: nothing outside the spool directory is ever touched.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from agent.errors import SpoolError

log = logging.getLogger(__name__)


def _remove_tree(path: Path) -> int:
    """Remove the directory `path` (not a symlink) and everything below it; returns a count."""
    removed = 0
    # make sure we may list and delete inside it, whatever mode a previous run left
    os.chmod(path, 0o700)
    with os.scandir(path) as entries:
        children = list(entries)
    for entry in children:
        removed += _remove_entry(Path(entry.path))
    os.rmdir(path)
    return removed + 1


def _remove_entry(path: Path) -> int:
    st = path.lstat()  # never follows a symlink
    if stat.S_ISDIR(st.st_mode):
        return _remove_tree(path)
    path.unlink()  # files, symlinks (the link itself), sockets, fifos
    return 1


def wipe(spool_dir: Path) -> int:
    """Empty `spool_dir` (create it if missing) and leave it as a 0700 directory.

    Returns how many entries were removed. A symlink or a file where the directory should be
    is removed and replaced by a real directory.
    """
    try:
        removed = 0
        try:
            st = spool_dir.lstat()
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            spool_dir.unlink()  # a symlink (to anywhere) or a stray file: not our directory
            removed += 1
            st = None
        if st is None:
            spool_dir.mkdir(mode=0o700, parents=True)
        else:
            os.chmod(spool_dir, 0o700)
            with os.scandir(spool_dir) as entries:
                children = list(entries)
            for entry in children:
                removed += _remove_entry(Path(entry.path))
        os.chmod(spool_dir, 0o700)
    except OSError as exc:
        raise SpoolError(
            f"cannot wipe the spool directory {spool_dir}: {exc.strerror or exc}"
        ) from exc
    if removed:
        log.info("spool: removed %d entries left by a previous run", removed)
    return removed
