"""What the agent and the broker both speak: wire models, key naming, error codes."""

from importlib import metadata


def version() -> str:
    """The installed bucketreel version (one version for agent and broker)."""
    try:
        return metadata.version("bucketreel")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"
