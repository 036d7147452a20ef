"""Test doubles for the cluster backends: never imported by product code (a test checks)."""
