"""Run the agent as if on another OS: `python foreign_platform.py win32|darwin ARGV...`.

The libraries the agent stands on (the standard library, mss, PyAV, urllib3, cryptography,
msgspec, platformdirs, filelock) are imported first, as this machine has them; then
`sys.platform` is set to the foreign one, the POSIX-only modules are blocked, the POSIX-only
names are removed from `os` and `signal`, and every module of `agent` and `shared` is
imported afresh. With ARGV, `agent.__main__.main(ARGV)` runs and its exit code is this
process's. A POSIX-only name reached at import or on those paths fails here as it would
there. (What the libraries themselves do on that OS is their authors' to test.)
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import signal
import sys

# what the agent's modules import at their top, loaded under the real platform
for name in (
    "argparse", "asyncio", "base64", "binascii", "ctypes", "ctypes.util", "ctypes.wintypes",
    "email.utils", "getpass", "hashlib", "http", "io", "json", "plistlib", "queue", "random",
    "secrets", "shlex", "shutil", "socket", "subprocess", "tempfile", "tomllib",
    "urllib.parse", "uuid", "xml.etree.ElementTree",
    "av", "filelock", "msgspec", "msgspec.inspect", "mss", "platformdirs",
    "platformdirs.macos", "platformdirs.windows", "urllib3",
    "cryptography.exceptions", "cryptography.hazmat.primitives.asymmetric.ed25519",
    "cryptography.hazmat.primitives.ciphers.aead", "cryptography.hazmat.primitives.serialization",
):
    importlib.import_module(name)

POSIX_ONLY_MODULES = ("fcntl", "termios", "tty", "pty", "pwd", "grp", "resource", "syslog")
POSIX_ONLY_OS = (
    "O_NOFOLLOW", "O_CLOEXEC", "O_DIRECTORY", "fchmod", "fchown", "lchown", "geteuid",
    "getuid", "getgid", "getegid", "pread", "pwrite", "killpg", "getpgid", "setsid", "fork",
    "statvfs", "sync", "uname", "mkfifo", "getloadavg", "sched_getaffinity",
)
# filelock was loaded as the POSIX build and calls this when it locks; the agent's own code
# never may (tests/agent/test_agent_portable.py checks that over the AST, mypy --platform too)
LIBRARY_NEEDS = ("fchmod",)
POSIX_ONLY_SIGNAL = ("SIGHUP", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGQUIT", "SIGALRM", "alarm")


def become(platform: str) -> None:
    sys.platform = platform
    for name in POSIX_ONLY_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]  # "import fcntl" now fails
    for name in POSIX_ONLY_OS:
        if hasattr(os, name) and name not in LIBRARY_NEEDS:
            delattr(os, name)
    if platform == "win32":
        for name in POSIX_ONLY_SIGNAL:
            if hasattr(signal, name):
                delattr(signal, name)


VAULT = "shared.vault"


def import_everything() -> list[str]:
    import agent
    import shared

    names: list[str] = []
    for package in (agent, shared):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name == VAULT or info.name.startswith(VAULT + "."):
                continue  # the customer's vault: no part of the agent (its build leaves it out)
            importlib.import_module(info.name)
            names.append(info.name)
    return names


def main() -> int:
    platform, argv = sys.argv[1], sys.argv[2:]
    assert not any(m == "agent" or m.startswith(("agent.", "shared")) for m in sys.modules)
    become(platform)
    names = import_everything()
    if not argv:
        print("\n".join(names))
        return 0
    from agent.__main__ import main as agent_main

    return agent_main(argv)


if __name__ == "__main__":
    sys.exit(main())
