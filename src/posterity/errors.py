"""Every failure a user can cause, as one exception class each.

Each class carries an exit code and a hint: what to do next, written for the person at
the terminal. Third-party exceptions (obstore, psycopg, pyrage, subprocess) are converted
into this tree at the adapter edge, so the CLI only ever sees ``PosterityError``.

    PosterityError                      exit 1
    ├── ConfigError                     exit 2   bad posterity.toml, bad arguments
    ├── RepositoryError                 exit 3
    │   ├── RepositoryNotInitialised
    │   ├── RepositoryExists
    │   ├── BackupNotFound
    │   └── ManifestInvalid
    ├── StorageError                    exit 4
    │   ├── BucketNotFound
    │   ├── StorageAuthError
    │   ├── StorageUnreachable
    │   ├── ObjectNotFound
    │   ├── ObjectExists
    │   ├── WriteConflict             R2 409: another conditional write to the key in flight
    │   └── StreamTooLarge            a stream too large for the part-size ceiling
    ├── SourceError                     exit 5
    │   ├── SourceUnreachable
    │   ├── SourceAuthError
    │   ├── ToolMissing
    │   ├── ToolVersionError
    │   ├── DumpFailed
    │   └── SourceTimeout               a tool or query did not answer within its bound
    ├── IntegrityError                  exit 6
    │   ├── ChecksumMismatch
    │   ├── TruncatedObject
    │   └── DecryptionFailed
    ├── KeyError_                       exit 7   identity/recipient problems (named to not shadow KeyError)
    │   └── RecipientsChanged                    the config's recipients are not the repository's
    ├── LockHeld                        exit 8
    ├── RestoreTargetError              exit 9
    ├── RestoreFailed                   exit 10
    ├── LocalResourceError              exit 11  disk full, permission denied, missing file (from_os_error)
    └── DeadlineExceeded                exit 14  a backup's or a job's configured timeout ran out

    Terminated (a KeyboardInterrupt)    exit 143 SIGTERM: stopped cleanly, nothing uncommitted kept
"""

from __future__ import annotations


class PosterityError(Exception):
    """Something went wrong."""

    exit_code = 1
    default_hint = ""

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.hint = hint if hint is not None else self.default_hint
        super().__init__(self.message)

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class ConfigError(PosterityError):
    """The configuration is not valid."""

    exit_code = 2
    default_hint = "Run `posterity config check` to see every problem, and `posterity config example` for a sample."


class RepositoryError(PosterityError):
    """The repository is not usable."""

    exit_code = 3


class RepositoryNotInitialised(RepositoryError):
    """No Posterity repository exists at this location."""

    default_hint = "Run `posterity init` to create it, or check [repository] url in posterity.toml."


class RepositoryExists(RepositoryError):
    """A Posterity repository already exists at this location."""

    default_hint = "Nothing was changed. Use the existing repository, or choose another url/prefix."


class BackupNotFound(RepositoryError):
    """No such backup."""

    default_hint = "Run `posterity list` to see the backups that exist."


class ManifestInvalid(RepositoryError):
    """A manifest could not be read."""

    default_hint = "The manifest may have been edited or damaged; run `posterity verify` and restore from another backup."


class StorageError(PosterityError):
    """The object store failed."""

    exit_code = 4
    default_hint = "Check the [repository] settings and that the object store is reachable, then retry."


class BucketNotFound(StorageError):
    """The bucket does not exist."""

    default_hint = "Create the bucket first (R2: Cloudflare dashboard or `wrangler r2 bucket create`), or fix [repository] url."


class StorageAuthError(StorageError):
    """The object store refused the credentials."""

    default_hint = "Check access_key_id/secret_access_key (and that the token may read and write this bucket)."


class StorageUnreachable(StorageError):
    """The object store could not be reached."""

    default_hint = "Check [repository] endpoint and the network; the operation can be retried safely."


class ObjectNotFound(StorageError):
    """An object is missing from the store."""

    default_hint = "Run `posterity verify` to find every missing object; restore from another backup."


class ObjectExists(StorageError):
    """An object already exists and keys are written once."""

    default_hint = "Keys are never overwritten; this usually means two writers use one repository."


class WriteConflict(StorageError):
    """A conditional write raced another one on the same key (R2: 409 ConditionalRequestConflict)."""

    default_hint = "Another write to the same key was in flight; the operation can be retried safely."


class StreamTooLarge(StorageError):
    """A stream would need more than 10,000 parts of the largest allowed part size."""

    default_hint = "Raise [repository] max_part_size_mib, or split the source."


class SourceError(PosterityError):
    """The data source failed."""

    exit_code = 5


class SourceUnreachable(SourceError):
    """The data source could not be reached."""

    default_hint = "Check that the server is running and the dsn/url in posterity.toml is right."


class SourceAuthError(SourceError):
    """The data source refused the credentials."""

    default_hint = "Check the user and password (PGPASSWORD, ~/.pgpass or ${ENV} in the dsn)."


class ToolMissing(SourceError):
    """A required program is not installed."""

    default_hint = "Install it (Debian: apt-get install postgresql-client) or put it on PATH."


class ToolVersionError(SourceError):
    """A required program is too old for the server."""

    default_hint = "Install the client tools of the server's major version (apt-get install postgresql-client-NN)."


NOTHING_COMMITTED = "Nothing was committed; earlier backups are intact."


class DumpFailed(SourceError):
    """The dump program failed."""

    default_hint = f"{NOTHING_COMMITTED} Fix the cause and run the backup again."


class SourceTimeout(SourceError):
    """The data source did not answer in time."""

    default_hint = ("Nothing was committed. Check that the server (or the program named) is not stuck "
                    "or overloaded, then retry.")


class IntegrityError(PosterityError):
    """Stored data failed an integrity check."""

    exit_code = 6
    default_hint = "The object is damaged; run `posterity verify --read-data` and restore from another backup."


class ChecksumMismatch(IntegrityError):
    """An object's sha256 does not match its manifest."""


class TruncatedObject(IntegrityError):
    """An object is shorter than its manifest says."""


class DecryptionFailed(IntegrityError):
    """The data could not be decrypted."""

    default_hint = "Check that identity_file holds the private key for one of this repository's recipients."


class KeyError_(PosterityError):
    """An encryption key is missing or unusable."""

    exit_code = 7
    default_hint = "Set [encryption] identity_file to the age identity (AGE-SECRET-KEY-…) created by `posterity key generate`."


class RecipientsChanged(KeyError_):
    """The configured recipients differ from the ones the repository records."""

    default_hint = (
        "If the change is intended, record it: `posterity key recipients rotate` (records the config's "
        "recipients as a new version; the old one is kept), or `posterity key recipients add/remove`. "
        "Otherwise restore [encryption] recipients in posterity.toml."
    )


class LockHeld(PosterityError):
    """Another operation holds the lock."""

    exit_code = 8
    default_hint = "Wait for it to finish. If no other posterity process is running, run `posterity unlock`."


class RestoreTargetError(PosterityError):
    """The restore target is not usable."""

    exit_code = 9


class RestoreFailed(PosterityError):
    """The restore failed; nothing partial was left behind."""

    exit_code = 10


class LocalResourceError(PosterityError):
    """A local resource ran out (disk full, unwritable folder)."""

    exit_code = 11
    default_hint = "Free space or point --staging-dir / TMPDIR at a larger disk, then retry."


class DeadlineExceeded(PosterityError):
    """The operation ran longer than its configured timeout and was stopped."""

    exit_code = 14
    default_hint = ("Nothing of it was committed. Find out what was stuck (a stopped or blocked dump, a slow "
                    "store), or raise [general] backup_timeout / the [[schedule]] timeout if it is just large.")


class Terminated(KeyboardInterrupt):
    """Stopped by SIGTERM: the operation unwinds like Ctrl-C (lock released, uncommitted payloads removed).

    A ``KeyboardInterrupt`` on purpose: no ``except Exception`` on the way may swallow it."""

    exit_code = 143

    def __init__(self, message: str = "Stopped by SIGTERM.") -> None:
        self.message = message
        super().__init__(message)


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected failure",
    2: "configuration or usage error",
    3: "repository error (not initialised, exists, backup not found, bad manifest)",
    4: "object storage error (bucket, credentials, network, missing object)",
    5: "source error (database unreachable, auth, tool missing or too old, dump failed)",
    6: "integrity error (checksum mismatch, truncated object, decryption failed)",
    7: "key error (identity or recipient missing or invalid)",
    8: "lock held by another operation",
    9: "restore target not usable (not empty, exists)",
    10: "restore failed (nothing partial left behind)",
    11: "local resource error (disk full, permission denied, missing file)",
    12: "status: a source is stale (older than max_age) or was never backed up",
    13: "status: a source's last backup failed, or its WAL archiving raises an alert",
    14: "deadline exceeded (a backup's backup_timeout or a job's timeout ran out; nothing committed)",
    15: "doctor: a check failed",
    130: "interrupted (Ctrl-C); nothing uncommitted kept",
    143: "stopped by SIGTERM: lock released, nothing uncommitted kept, then ended by the signal (shells: 143)",
}


def reworded(exc: PosterityError, message: str) -> PosterityError:
    """A new error of ``exc``'s type (so its exit code and hint) saying ``message``, caused by
    ``exc``, which stays as it was (an error is never changed to carry more): raise it
    ``from exc``. Adapters add what they undid (``reworded(exc, exc.message + note)``)."""
    new = type(exc).__new__(type(exc))  # no __init__: some error types take other arguments
    new.__dict__.update(exc.__dict__)
    new.message = message
    new.args = (message,)
    new.__cause__ = exc
    return new


def say_nothing_committed(exc: PosterityError) -> PosterityError:
    """``exc`` (same object, type and exit code) with a hint that starts by saying nothing was
    committed, unless its message or hint already says so. For an error that ended a backup
    before its manifest was written, whichever source raised it: a failed pg_dump says it
    (``DumpFailed``), and a Meilisearch refusal mid-export must say it too."""
    if "nothing was committed" not in f"{exc.message} {exc.hint}".lower():
        exc.hint = f"{NOTHING_COMMITTED} {exc.hint}".strip()
    return exc


def from_os_error(exc: OSError, doing: str = "") -> PosterityError:
    """An ``OSError`` a user can cause (permission, disk full, missing file), named with
    its file and a hint. The one conversion for any OS error that reaches the CLI unconverted;
    adapters that know better (the folder store: exit 4) convert before it gets there."""
    import errno

    where = f" {exc.filename}" if exc.filename else ""
    what = f"{doing}: " if doing else ""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LocalResourceError(f"{what}No space left on the device holding{where or ' a file'} ({reason}).")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        import getpass

        return LocalResourceError(
            f"{what}Permission denied:{where} ({reason}).",
            hint=f"This runs as user {getpass.getuser()}: give it access (chown/chmod the file or folder), "
            "or run as the user that owns it.",
        )
    if exc.errno == errno.ENOENT:
        return LocalResourceError(f"{what}No such file or folder:{where}.",
                                  hint="Check the path in posterity.toml or on the command line.")
    return LocalResourceError(f"{what}{reason}{':' + where if where else ''}.",
                              hint="Fix the file or folder named, then retry.")
