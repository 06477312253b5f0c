"""People and permissions: users, passwords, sessions and the hash-chained audit trail (``access``),
the gate every read of residents and cases goes through (``policy``), rate limits (``ratelimit``) and
API keys (``keys``). Imports ``twin.errors`` and the inspector's raw reads, which the gate wraps.
"""
