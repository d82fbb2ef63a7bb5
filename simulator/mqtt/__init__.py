"""lapcast's MQTT edge: the one place that knows about aiomqtt and paho.

Everything that connects to a broker (the replay engine, the consumers, the boards)
goes through this package:

* ``settings.py``: ``BrokerSettings`` and ``parse_broker_url`` (URL, options, environment);
* ``client.py``: ``CheckedClient``, whose refusals raise ``BrokerError``;
* ``reconnect.py``: ``Reconnector``, the one reconnect loop, over ``backoff.py``'s ``Backoff``;
* ``payload.py``: ``payload_bytes``, the bytes of an incoming message;
* ``workarounds.py``: every aiomqtt/paho workaround, each saying when it can go.
"""
