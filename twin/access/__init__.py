"""People and permissions: users, passwords, sessions and the hash-chained audit trail (``access``),
the gate every read of residents and cases goes through (``policy``), rate limits (``ratelimit``),
API keys and their use (``keys``), and the commands on users and keys that ``twin users|keys`` and the
admin screen share (``commands``). Imports ``twin.errors``, ``twin.store`` (its clock, the control channel's
``Command``) and the inspector's raw reads, which the gate wraps.
"""
