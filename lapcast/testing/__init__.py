"""Test support that ships with lapcast: pieces the tests (and anyone's tests) run for real."""
