"""Support code shared by the tests (importable as `helpers`)."""
