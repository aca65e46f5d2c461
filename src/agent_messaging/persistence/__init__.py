"""Persistence: the psqlpy pool and trio bridge, embedded server, migrations, writer, repositories."""
