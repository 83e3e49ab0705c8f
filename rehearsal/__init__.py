"""Local rehearsal of the three rollouts: HAProxy as the Service, server processes as pods."""
