"""The rule catalogue: each protocol rule one pure function, used by the write checks and the read models."""
