"""The agent's exceptions. Everything the command line reports derives from `AgentError`.

Messages are written for the person at the terminal and never carry a token, a password or a
presigned URL's query string.
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of every error the agent reports as `bucketreel-agent: error: <message>`."""


class ConfigError(AgentError):
    """The local configuration is missing, unreadable or unsafe (e.g. file permissions)."""


class CredentialError(ConfigError):
    """The device credential file is missing, malformed or too widely readable."""


class EnrollmentError(AgentError):
    """Enrolling this device with the broker failed."""


class CaptureError(AgentError):
    """The screen cannot be captured (no display, no such monitor, ...)."""


class EncodeError(AgentError):
    """The video encoder failed."""


class SpoolError(AgentError):
    """The spool directory cannot be wiped or created."""


class BrokerError(AgentError):
    """The broker refused a request or could not be reached.

    `status` is the HTTP status (0 when no reply arrived), `code` the `error` field of the
    broker's JSON reply (`shared.errors.ErrorCode` values) or a local code such as
    `unreachable` / `invalid_reply`.
    """

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(
            f"broker: {message} ({code}, HTTP {status})" if status else f"broker: {message}"
        )
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth retrying later: no reply, a 5xx, or a 429 rate limit."""
        return self.status == 0 or self.status >= 500 or self.status == 429


class BrokerUnreachable(BrokerError):
    """No HTTP reply: connection refused, reset, timed out, TLS failure, ...

    `sent` says whether the request may have reached the broker (False only when the
    connection itself could not be made, so a retry cannot duplicate anything).
    """

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(0, "unreachable", message)
        self.sent = sent


class UploadError(AgentError):
    """A segment could not be stored in the bucket (S3 refused it or retries ran out)."""

    def __init__(self, seq: int, message: str) -> None:
        super().__init__(f"segment {seq}: {message}")
        self.seq = seq
