"""One way to start a set of processes: a topology described as data, one supervisor.

* ``spec``: the data (``Topology``, ``ConsumerSpec``, ``EngineSpec``, ``BoardSpec``,
  ``WebSpec``, ``ProcessSpec``) and ``lapcast_argv``, the one builder of ``python -m lapcast ...``;
* ``broker``: what the supervisor needs of a broker (``Broker``, ``BrokerSpec``), with
  ``MosquittoSpec`` and ``ExternalBroker``; ``mosquitto``: the Mosquitto process;
* ``nats``: ``NatsClusterSpec``, a NATS cluster speaking MQTT 3.1.1 (``NatsCluster``);
* ``process``: one child (own session, tethered, log file, reaped with CPU and peak memory);
* ``tether``: children that die with their parent, even by SIGKILL;
* ``supervisor``: starts a topology in its one order, names a part that died, stops it all.

    topology = Topology(broker=MosquittoSpec(), consumers=(ConsumerSpec(...),),
                        engine=EngineSpec(...))
    with Supervisor(topology, workdir) as supervisor:
        supervisor.start()
        ...
        supervisor.check()  # PartDied: which part, how it ended, its last log lines
"""

from lapcast.topology.broker import Broker, BrokerSpec, ExternalBroker, MosquittoSpec
from lapcast.topology.mosquitto import MosquittoProcess
from lapcast.topology.nats import NatsCluster, NatsClusterSpec
from lapcast.topology.process import Child, Usage, stop_popen, vm_hwm_mb
from lapcast.topology.spec import (
    BoardSpec,
    ConsumerSpec,
    EngineSpec,
    ProcessSpec,
    Topology,
    WebSpec,
    lapcast_argv,
)
from lapcast.topology.supervisor import PartDied, Supervisor

__all__ = [
    "BoardSpec",
    "Broker",
    "BrokerSpec",
    "Child",
    "ConsumerSpec",
    "EngineSpec",
    "ExternalBroker",
    "MosquittoProcess",
    "MosquittoSpec",
    "NatsCluster",
    "NatsClusterSpec",
    "PartDied",
    "ProcessSpec",
    "Supervisor",
    "Topology",
    "Usage",
    "WebSpec",
    "lapcast_argv",
    "stop_popen",
    "vm_hwm_mb",
]
