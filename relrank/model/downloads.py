"""Weights files fetched over HTTP once, verified, and cached: `fetch(url, sha256_prefix)`.

A download goes to `<cache>/<file>.part` and is renamed into place only once complete and its SHA-256 starts
with the expected prefix (torchvision names its files so). An interrupted download resumes where it stopped
(an HTTP Range request; a server that ignores it starts the file again). The cache is `$RELRANK_CACHE/weights`
or `~/.cache/relrank/weights`; `$RELRANK_WEIGHTS_URL` replaces the base of every URL (a mirror).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request

from tqdm.auto import tqdm

from relrank.errors import UserError

CHUNK = 1 << 20
TIMEOUT = 30  # seconds without data before a download counts as broken


def cache_dir() -> str:
    root = os.environ.get("RELRANK_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "relrank")
    return os.path.join(root, "weights")


def mirrored(url: str, base: str) -> str:
    """`url` with its `base` replaced by $RELRANK_WEIGHTS_URL where that is set."""
    mirror = os.environ.get("RELRANK_WEIGHTS_URL")
    return mirror.rstrip("/") + "/" + url[len(base):].lstrip("/") if mirror and url.startswith(base) else url


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, sha256_prefix: str, name: str) -> str:
    """The path of `url`'s file in the cache, downloaded first if it is not there; a one-line error naming the
    URL, and how to pass a file instead, when it cannot be had."""
    path = os.path.join(cache_dir(), os.path.basename(url))
    if os.path.isfile(path):
        return path
    os.makedirs(cache_dir(), exist_ok=True)
    partial = path + ".part"
    instead = f"download it where you can and give --weights=FILE (or put it at {path})"
    try:
        _download(url, partial, name)
    except urllib.error.HTTPError as error:
        raise UserError(f"cannot download --weights={name} from {url}: HTTP {error.code} {error.reason}; "
                        f"{instead}") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", None) or error
        got = os.path.getsize(partial) if os.path.exists(partial) else 0
        resume = f" after {got / 2**20:.1f} MiB (run again to resume)" if got else ""
        raise UserError(f"cannot download --weights={name} from {url}{resume}: {reason} (offline, or the server is "
                        f"unreachable?); {instead}") from None
    digest = sha256(partial)
    if not digest.startswith(sha256_prefix):
        os.remove(partial)
        raise UserError(f"the download of --weights={name} from {url} is damaged or not the published file: its "
                        f"SHA-256 starts {digest[:len(sha256_prefix)]}, expected {sha256_prefix} (removed; run again, "
                        f"or {instead})")
    os.replace(partial, path)
    return path


def _download(url: str, partial: str, name: str) -> None:
    """Append `url`'s bytes to `partial` from where it ends (or from the start where the server cannot resume)."""
    have = os.path.getsize(partial) if os.path.exists(partial) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not have:  # 416: the range starts at the end, the file is complete
            raise
        return
    with response:
        if have and response.status != 206:
            have = 0  # the server sent the whole file
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(partial, "ab" if have else "wb") as f, \
                tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=f"downloading {name}") as bar:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                f.write(block)
                bar.update(len(block))
        if total is not None and os.path.getsize(partial) < total:
            raise ConnectionError(f"the connection closed after {os.path.getsize(partial)} of {total} bytes")
