"""The domain: records, the participant aggregate, the protocol and its rules. No I/O."""
