"""What the checks find: each problem named by its kind, with where and what.

The kinds (README, "The vault"):
  missing    an object the chain, a manifest or an anchor says exists is not in the bucket,
             or an audit entry is not in the export;
  altered    bytes or fields differ from what was signed (a hash, a size, a moved document);
  reordered  a segment sits at another place than the one its record was signed for;
  forged     a signature does not verify against the key it must come from, or names a key
             that is not published (or not trusted);
  unsigned   custody proof is absent where the signer signs (no metadata, no signature);
  re-timed   signed times run backwards or overlap, or differ from the times signed earlier;
  truncated  the audit export ends before an anchor the broker wrote.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.StrEnum):
    MISSING = "missing"
    ALTERED = "altered"
    REORDERED = "reordered"
    FORGED = "forged"
    UNSIGNED = "unsigned"
    RETIMED = "re-timed"
    TRUNCATED = "truncated"


@dataclass(frozen=True, slots=True)
class Problem:
    kind: Kind
    subject: str  # an object key, or "audit entry 12"
    message: str

    def line(self) -> str:
        return f"{self.kind.value.upper():<9}  {self.subject}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "subject": self.subject, "message": self.message}
