"""The one download path of the kit: announced, hash-checked, with a helpful offline error."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Download:
    """A public file fetched on request (a painting, a data set's zip).

    ``sha256`` pins the file; where it is ``None`` the first download is trusted and its hash is
    printed so that it can be pinned in the catalogue (the hashes of the kit's entries cannot be
    computed without the network, which the machines that built the kit did not have).
    """

    url: str
    sha256: str | None
    description: str


def fetch(
    url: str,
    *,
    name: str,
    description: str,
    sha256: str | None,
    offline_hint: str,
    timeout: float,
) -> bytes:
    """Download ``url`` and return its bytes after checking the pinned SHA-256.

    Args:
        url: what to fetch.
        name: the item's name, for messages.
        description: what it is, announced before the download.
        sha256: the pinned hash; ``None`` trusts the first download and prints its hash so that
            it can be pinned.
        offline_hint: appended to the error when the download fails (what works without a
            network, or where to put the file by hand).
        timeout: seconds to wait for the server.

    Raises:
        RuntimeError: the download failed, or the hash does not match (nothing is saved).
    """
    print(f"course_lib: downloading {description} from {url}")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "course-kit/0.1"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as err:
        raise RuntimeError(f"could not download {name!r} ({err}). Offline? {offline_hint}") from err
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise RuntimeError(
            f"download of {name!r} has SHA-256 {digest}, expected {sha256}; not saved"
        )
    if sha256 is None:
        print(f"course_lib: {name} sha256 = {digest} (not pinned yet)")
    return data
