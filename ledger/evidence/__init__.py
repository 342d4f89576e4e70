"""Tamper evidence: RFC 6962 Merkle trees and the stand-alone proof checker (standard library only)."""
