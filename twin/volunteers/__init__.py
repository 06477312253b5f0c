"""The volunteer scheme (文明小杜): residents grab small tasks near home, earn points, spend them at merchants.

Resident and merchant accounts, linked to a resident record or a merchant (``accounts``); tasks a community
operator or grid worker publishes, grabbed with the places counted in the writing transaction, checked in and
out on site and confirmed by the grid worker (``tasks``); the points ledger, append-only and hash-chained, a
balance being its sum (``ledger``); merchants' rewards and the codes residents redeem them with (``rewards``);
小杜拍, a resident's photo report taken in as a case through the Open311 intake, worth points once the grid worker
finds it valid (``reports``); and the figures per grid and community for the leader's screen (``figures``).

Every function runs inside the caller's transaction (the server's writer, or one command) and checks everything
before it writes, so a refusal (a :class:`~twin.errors.TwinError`) leaves nothing behind. Imports ``twin.access``,
``twin.cases``, ``twin.party``, ``twin.store`` and ``twin.errors``; never a UI library.
"""
