"""The actor kernel: mailboxes, actors, supervisors and the one-shot reply slot.

It knows nothing of agents, messages or databases (it imports only
:mod:`agent_messaging.errors`); the domain (:mod:`agent_messaging.actors`)
builds on it.
"""
