"""The bucket on its own: what the broker writes beside the recordings, in a form anyone with
read access to the bucket can check without the broker (issue 18).

Both sides speak it: the broker writes (`broker.bucket`), the customer's `bucketreel-vault`
reads and verifies. It imports neither program.

Layout under the tenant's `<prefix>` (`shared.bucket.keys`):

- `<prefix>/<tenant>/<user>/<recording>/<seq:06d>.mp4` — a segment (`shared.keys.segment_key`,
  unchanged). Its S3 user metadata (`x-amz-meta-…`, signed into the presigned PUT so the
  agent cannot leave it off) is its custody record and the device's signature
  (`shared.bucket.metadata`).
- `<prefix>/<tenant>/<user>/<recording>/manifest.json` — the recording's manifest, signed by
  the broker: segments, gaps (with the device's signatures), chain head.
- `<prefix>/_bucketreel/keys/<key_id>.json` — a broker Ed25519 public key (unsigned: its
  `key_id` is the first 16 hex digits of the SHA-256 of the raw key, so it names itself).
- `<prefix>/_bucketreel/devices/<device_id>.json` — a device's public key record, signed by
  the broker at enrollment.
- `<prefix>/_bucketreel/audit/<tenant>/<seq:012d>.json` — an audit anchor: the head of the
  tenant's audit chain at entry `seq` (its chain hash and MAC), signed by the broker.

Every control object is JSON, written once (`If-None-Match: *`), and carries `format` (1) and
`kind`; a signed one also carries `key_id` and `signature` (base64 Ed25519 over
`shared.bucket.records.signed_bytes`: a per-kind context line, then the sorted compact JSON
of every field except `signature`).
"""
