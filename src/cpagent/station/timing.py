"""How often the station re-checks and retries, in one place that tests shorten.

The parts of the station read these names from this module when they wait (never copy
them at import), so a test that sets ``timing.RECORD_RETRY_S`` changes the waits that
follow.
"""

from __future__ import annotations

RECORD_RETRY_S = 5.0
"""A session end the store could not record is tried again this often (it is money)."""
RESERVATION_RECHECK_S = 60.0
"""A wait for a reservation's expiry re-reads the wall clock at least this often (NTP may
step it), and a reservation store that failed is tried again this often. Waits for a
charging profile's next period do the same."""
