"""Persistence: the psqlpy pool and trio bridge, migrations, the embedded server, presence, the writer, the stores.

Every SQL statement of the runtime lives here (most of them in :mod:`.store`);
nothing here imports the kernel or the domain.
"""
