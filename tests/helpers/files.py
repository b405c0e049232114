"""File-tree helpers shared by the tests that check "nothing on disk was lost"."""
import hashlib
from pathlib import Path

from dassl.utils.run_lock import LOCK_FILE_NAME


def digest_tree(path):
    """{relative path: sha256} of every file under ``path``, except the run lock file (every run
    into a directory rewrites who holds it; it is not a result)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(path).rglob("*")) if p.is_file() and p.name != LOCK_FILE_NAME}
