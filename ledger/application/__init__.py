"""Use cases (the application layer): write, import, audit, verify, prove, sign, control access."""
