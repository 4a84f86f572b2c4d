"""bucketreel agent: records the screen, encodes H.264 in memory, uploads each segment to S3.

Importing this package does no I/O; the command line lives in `agent.__main__`.
"""
