"""Read models: per-participant timelines that follow the notification log, and the queries on them."""
