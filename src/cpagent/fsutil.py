"""File-system durability helpers shared by everything that must survive a power cut."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def fsync_dir(path: Path) -> None:
    """Make a rename (or a new file) in ``path`` durable. Some file systems cannot sync a
    directory; that is logged, not an error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        log.debug("cannot fsync directory %s: %s", path, err)
