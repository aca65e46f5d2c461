"""``python -m agent_messaging``: the command line."""

from .cli import main

main()
