"""The kernel: mailbox, actors, supervisor, the runtime object and its CLI."""
