"""``python -m agent_messaging``: the ``agent-messaging`` command line."""

from .runtime.cli import main

if __name__ == "__main__":
    main()
