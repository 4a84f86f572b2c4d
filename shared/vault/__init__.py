"""`bucketreel-vault`: the customer reads, verifies and exports the bucket on their own.

It speaks the bucket format (`shared.bucket`) and S3 with the customer's credentials (read and
list on the prefix), and never imports the broker or the agent (.importlinter). Modules:
`store` (S3), `inventory` (the listing), `trust` (broker keys, device records), `recording`
(one recording's checks), `catalog` (by person and day), `audit` (the audit export against
the anchors), `remux` and `export` (one MP4), `report` (the custody report and its re-check),
`cli`, `commands` and `__main__` (the program). The read policy it prints is
`shared.bucket.policy`'s.
"""
