"""trial-ledger: the event-sourced ledger of NFH-MSC-CMV-2014; layers in docs/architecture.md."""
