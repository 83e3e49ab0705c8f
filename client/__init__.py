"""The recommendation client: one-shot requests, continuous rollout timing, and plots."""
