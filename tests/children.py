"""What the tests that start child processes with fake CPU devices share."""

import os


def xla_flags_with_devices(count: int) -> str:
    """This session's ``XLA_FLAGS`` (with conftest.py's optimization level)
    plus ``count`` fake CPU devices, for a child process's environment."""
    flags = os.environ.get("XLA_FLAGS", "")
    return f"{flags} --xla_force_host_platform_device_count={count}".strip()
