"""Stream every stored event through ``TrialLedger.entries()`` and report time and peak memory.

Run in its own process by ``bench/run.py`` so that the peak resident memory is
the read path's alone (SPEC section 4: rebuilds stream):

    python bench/stream.py STORE_URL
"""

from __future__ import annotations

import json
import resource
import sys
import time

from ledger.application.trial_ledger import TrialLedger


def main() -> None:
    ledger = TrialLedger(sys.argv[1])
    start = time.perf_counter()
    count = sum(1 for _ in ledger.entries())
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "events": count, "peak_mb": peak_mb}))


if __name__ == "__main__":
    main()
