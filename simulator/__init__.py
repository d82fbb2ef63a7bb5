"""The simulator: wire contract, sources (Al Kamel CSV, scenario TOML, synthetic
fields), the event log they become, and the replay engine that publishes it."""
