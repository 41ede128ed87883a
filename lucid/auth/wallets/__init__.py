"""Hardware wallets: one backend interface (``backend``), the software wallet that stands
in for a device (``software``), and the manager that applies timeouts, retries and the
firmware minimums to whichever backends are installed (``manager``)."""
