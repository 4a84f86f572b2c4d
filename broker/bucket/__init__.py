"""What the broker writes to the tenant's bucket beside the recordings (issue 18; the format
is `shared.bucket`): each segment's signed metadata (in the upload grant), device records,
recording manifests and audit anchors (through the outbox), all write-once, signed with the
broker's Ed25519 key, never a recording byte (G1), never a list, delete or overwrite (G2/G3).
"""
