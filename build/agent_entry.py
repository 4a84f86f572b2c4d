"""Entry point frozen into the `bucketreel-agent` binary (see bucketreel-agent.spec).

The same function as the `bucketreel-agent` console script: `agent.__main__:main`.
"""

import sys

from agent.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
