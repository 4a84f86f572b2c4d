"""The command line of `bucketreel-vault`: one parser, one sub-command per job."""

from __future__ import annotations

import argparse
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared import version

DESCRIPTION = """\
Read, verify and export the recordings in your own S3 bucket, without the bucketreel broker.
It needs only read access: s3:ListBucket on the prefix and s3:GetObject under it.
Credentials come from the standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
AWS_PROFILE or --profile, SSO, an instance role)."""

EPILOG = """\
exit codes: 0 all checked and clean; 1 problems found (each named: missing, altered,
reordered, forged, unsigned, re-timed, truncated); 2 usage, credential or bucket errors
(nothing was checked); 3 an internal error (a bug: no verdict); 130 interrupted.

examples:
  bucketreel-vault --bucket acme-rec --prefix rec list --day 2026-03-02
  bucketreel-vault --bucket acme-rec --prefix rec verify --person ann@acme.example --day 2026-03-02
  bucketreel-vault --bucket acme-rec --prefix rec verify --all --json
  bucketreel-vault --bucket acme-rec --prefix rec verify-audit audit.jsonl
  bucketreel-vault --bucket acme-rec --prefix rec export --person ann@acme.example \\
      --from 2026-03-02T09:00 --to 2026-03-02T10:00 -o ann.mp4
  bucketreel-vault verify --report ann.custody.json"""


def zone(value: str) -> ZoneInfo:
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown time zone {value!r} (an IANA name)") from None


def day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a day (YYYY-MM-DD)") from None


def moment(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a time (ISO 8601, e.g. 2026-03-02T09:30 or …T09:30+01:00)"
        ) from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="bucketreel-vault", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"bucketreel-vault {version()}")
    top.add_argument("--bucket", help="the bucket the recordings are in")
    top.add_argument("--prefix", default="", help="the key prefix the broker writes under")
    top.add_argument("--endpoint-url", help="an S3-compatible endpoint (default: AWS)")
    top.add_argument("--region", help="the bucket's region (default: from the AWS config)")
    top.add_argument("--profile", help="a named profile of the AWS config files")
    top.add_argument(
        "--trust-key", action="append", metavar="KEY_ID", dest="trust_keys",
        help="believe only this broker key (repeatable; default: every key published under "
        "<prefix>/_bucketreel/keys/)",
    )
    top.add_argument("--zone", type=zone, default=ZoneInfo("UTC"),
                     help="the time zone days and times without an offset are in (default UTC)")
    top.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    listing = commands.add_parser("list", help="recordings by person and day",
                                  description="Recordings by person and day, from the bucket "
                                  "alone (nothing is verified: see verify).")
    listing.add_argument("--person", help="a user id or e-mail address")
    listing.add_argument("--day", type=day, help="YYYY-MM-DD, in --zone")

    verify = commands.add_parser(
        "verify", help="check signatures, chain, bytes and times",
        description="Check recordings: every segment's device signature, the chain links, "
        "the bytes' SHA-256, the signed times, the gaps, and the manifests' and device records' "
        "broker signatures. Every segment's bytes are read. Exit 1 on any problem.",
    )
    verify.add_argument("recording", nargs="?", help="one recording id, or TENANT/USER/RECORDING "
                        "(as `verify` prints it: then only that recording is listed)")
    verify.add_argument("--person", help="a user id or e-mail address (with --day)")
    verify.add_argument("--day", type=day, help="YYYY-MM-DD, in --zone (with --person)")
    verify.add_argument("--all", action="store_true", help="every recording under the prefix")
    verify.add_argument("--report", help="a custody report (…custody.json) written by export: "
                        "checked offline, and against the bucket when --bucket is given")

    audit = commands.add_parser(
        "verify-audit", help="hold the broker's audit export against the bucket's anchors",
        description="Recompute the audit export's hash chain and hold it against the anchors "
        "the broker wrote to the bucket. Export the whole log, without filters: GET "
        "/api/v1/admin/audit/export (the admin console's audit page, Export).",
    )
    audit.add_argument("export", help="the export, one JSON object per line (audit.jsonl)")
    audit.add_argument("--tenant", help="the tenant id, for an export whose lines name none")

    export = commands.add_parser(
        "export", help="one MP4 of a person's segments, with a custody report",
        description="Remux a person's segments between two times into one MP4, without "
        "re-encoding (whole segments: those that overlap the range), and write a custody "
        "report beside it (OUT.custody.json and OUT.custody.txt).",
    )
    export.add_argument("--person", required=True, help="a user id or e-mail address")
    export.add_argument("--from", dest="start", type=moment, required=True,
                        help="ISO 8601; without an offset, in --zone")
    export.add_argument("--to", dest="end", type=moment, required=True,
                        help="ISO 8601; without an offset, in --zone")
    export.add_argument("-o", "--output", required=True, help="the MP4 to write")
    export.add_argument("--force", action="store_true", help="overwrite OUT if it exists")

    commands.add_parser(
        "policy", help="print the IAM policy the vault needs (read and list, nothing more)",
        description="Print the least IAM policy for the vault's credentials: s3:ListBucket on "
        "the prefix and s3:GetObject under it (needs --bucket; nothing is read).",
    )
    return top
