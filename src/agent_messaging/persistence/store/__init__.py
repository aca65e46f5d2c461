"""Every SQL statement of the runtime, one module per table family.

Each module holds the reads of its tables (run straight on the pool) and the
:class:`~agent_messaging.persistence.writer.Statement` objects of its batched
writes (run by the group-commit writer, which knows none of them by name).
Rows come back as dicts or small dataclasses of plain values; decoding a
payload into the runtime's message type is the domain's business (a store
takes a ``decode`` callable where it returns payloads).

- :mod:`.agents`: organizations and agents (registration, status, restart counters)
- :mod:`.hosts`: which runtime hosts which agent and runs which meeting (claims, liveness)
- :mod:`.messages`: messages, unread claims, paging, dead letters
- :mod:`.conversations`: conversation sessions, calls and replies
- :mod:`.meetings`: meetings, participants, history
"""
