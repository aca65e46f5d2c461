"""The domain actors: agents, conversations, meetings."""
