"""The domain: agents, hosting, one-way messages, conversations and meetings, on the kernel and persistence.

- :mod:`.services`: what the domain gets from the runtime (typed), the codec and the agent directory
- :mod:`.news`: in-process signals, the LISTEN connection and the periodic sweep
- :mod:`.registry`: who is hosted here and with what code
- :mod:`.agent`: the ``Agent`` base class users subclass, ``MessageContext``
- :mod:`.envelope`: a message in flight
- :mod:`.calls`: reply slots and the recording of replies (shared by hosting and conversations)
- :mod:`.agent_actor`, :mod:`.hosting`: the agent actor and the agent supervisor that hosts them
- :mod:`.one_way`, :mod:`.conversation`, :mod:`.meeting`: the three facades
"""
