"""Real servers for the test suite: S3 (moto), PostgreSQL, Xvfb and the broker.

Every server starts as a subprocess in its own process group, on a free loopback port (or a
display number the server picks itself), and is stopped by its own PID. Nothing here mocks the
project's own code.
"""
