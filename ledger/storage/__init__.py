"""Storage adapters: the eventsourcing recorders extended with the seal, the codec, direct scans."""
