"""lapcast's MQTT edge: the one place that knows about aiomqtt and paho.

Everything that connects to a broker (the replay engine, the consumers, the boards)
goes through this package: one reconnect loop with one backoff, one client wrapper,
one set of third-party workarounds.
"""
