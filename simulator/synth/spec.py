"""What a synthetic field is asked to be: ``synth:cars=1000,seed=7,laps=50,...``.

One frozen ``SynthSpec``, written as a source spec string (what ``load_source``
takes, what ``lapcast replay synth:...`` takes) or built from command-line options
(``lapcast synth``, ``lapcast replay synth --cars ...``, ``lapcast stress``); both
ways meet here so that every command means the same thing by the same words.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Final, Literal

from simulator.errors import SourceError
from simulator.synth.model import CLASSES

__all__ = [
    "MAX_CARS",
    "SessionMode",
    "SynthSpec",
    "add_synth_options",
    "parse_spec",
    "source_from_options",
    "spec_from_options",
]

SessionMode = Literal["race", "qualifying"]

# The engine's SessionStarted holds every entry in one MQTT message (~170 bytes a car):
# at 20,000 cars it is 3.4 MB, inside the secure broker's 4 MiB max_packet_size and the
# consumers' limit for it (consumers.guard.MAX_META_BYTES).
MAX_CARS: Final = 20_000


@dataclass(frozen=True, kw_only=True)
class SynthSpec:
    """A synthetic session. ``laps``: race distance, or each car's budget in qualifying.

    ``fcy`` and ``sc`` fix the number of full-course yellows and safety cars (None:
    drawn from the fitted rates over the expected length of the race). ``retirements``
    scales the fitted retirement rate: 0 keeps every car running to the flag (a field
    whose event rate stays steady, for stress tests); the rest of the field is the
    same whatever it is.

    ``red`` puts a red-flag period (the race suspended) in a race: it starts at that
    minute of session time and lasts ``red_minutes``; None (the default) adds none,
    and the field is then exactly what it is without these keys.
    """

    cars: int = 36
    classes: tuple[str, ...] = ("HYPERCAR", "LMGT3")
    laps: int = 50
    seed: int = 0
    session: SessionMode = "race"
    fcy: int | None = None
    sc: int | None = None
    retirements: float = 1.0
    red: int | None = None
    red_minutes: int = 30

    def __post_init__(self) -> None:
        where = self.text()
        if not 1 <= self.cars <= MAX_CARS:
            raise SourceError(where, f"cars must be 1..{MAX_CARS}, not {self.cars} (the "
                              "session's entry list travels in one MQTT message)")
        if self.laps < 1:
            raise SourceError(where, f"laps must be at least 1, not {self.laps}")
        if not self.classes:
            raise SourceError(where, "classes: name at least one class")
        for name in self.classes:
            if name not in CLASSES:
                raise SourceError(where, f"unknown class {name!r} "
                                  f"(known: {', '.join(CLASSES)})")
        if len(set(self.classes)) != len(self.classes):
            raise SourceError(where, f"classes: a class is named twice in "
                              f"{':'.join(self.classes)}")
        if self.session not in ("race", "qualifying"):
            raise SourceError(where, f"session must be race or qualifying, not "
                              f"{self.session!r}")
        if self.session == "qualifying" and self.laps < 3:
            raise SourceError(where, f"qualifying: laps is each car's budget, at least 3 "
                              f"(out-lap, flying lap, in-lap), not {self.laps}")
        if not self.retirements >= 0:
            raise SourceError(where, f"retirements must be 0 or more, not {self.retirements}")
        if self.red is not None:
            if self.session != "race":
                raise SourceError(where, "red: a red-flag period is modelled in races only")
            if self.red < 1:
                raise SourceError(where, f"red is the minute the race is suspended, at "
                                  f"least 1, not {self.red}")
        if self.red_minutes < 1:
            raise SourceError(where, f"red_minutes must be at least 1, not {self.red_minutes}")
        if self.red is None and self.red_minutes != 30:
            raise SourceError(where, "red_minutes is the length of the red-flag period: "
                              "give red (the minute it starts) too")
        for name in ("fcy", "sc"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise SourceError(where, f"{name} must be 0 or more, not {value}")

    def text(self) -> str:
        """The spec as a source string; ``parse_spec(s.text()) == s``."""
        parts = [f"cars={self.cars}", f"seed={self.seed}", f"laps={self.laps}",
                 f"classes={':'.join(self.classes)}", f"session={self.session}"]
        if self.fcy is not None:
            parts.append(f"fcy={self.fcy}")
        if self.sc is not None:
            parts.append(f"sc={self.sc}")
        if self.retirements != 1.0:
            parts.append(f"retirements={self.retirements:g}")
        if self.red is not None:
            parts.append(f"red={self.red}")
        if self.red is not None and self.red_minutes != 30:
            parts.append(f"red_minutes={self.red_minutes}")
        return "synth:" + ",".join(parts)

    def session_id(self) -> str:
        return f"synth-{self.session}-{self.cars}-s{self.seed}"


_INT_KEYS: Final = ("cars", "laps", "seed", "fcy", "sc", "red", "red_minutes")
_KEYS: Final = tuple(f.name for f in fields(SynthSpec))


def parse_spec(spec: str) -> SynthSpec:
    """``synth`` or ``synth:key=value,...`` -> ``SynthSpec``; errors name the column."""
    if spec == "synth":
        return SynthSpec()
    if not spec.startswith("synth:"):
        raise SourceError(spec, "a synthetic source starts with 'synth:'", line=1, column=1)
    values: dict[str, object] = {}
    column = len("synth:") + 1
    for item in spec[len("synth:"):].split(","):
        if item:
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep:
                raise SourceError(spec, f"expected key=value, got {item!r}", line=1, column=column)
            if key not in _KEYS:
                raise SourceError(spec, f"unknown key {key!r} (known: {', '.join(_KEYS)})",
                                  line=1, column=column)
            value = value.strip()
            if key in _INT_KEYS:
                try:
                    values[key] = int(value.replace("_", ""))
                except ValueError:
                    raise SourceError(spec, f"{key} must be an integer, not {value!r}",
                                      line=1, column=column + len(key) + 1) from None
            elif key == "retirements":
                try:
                    values[key] = float(value)
                except ValueError:
                    raise SourceError(spec, f"{key} must be a number, not {value!r}",
                                      line=1, column=column + len(key) + 1) from None
            elif key == "classes":
                values[key] = tuple(c.strip().upper() for c in value.split(":") if c.strip())
            else:
                values[key] = value.lower()
        column += len(item) + 1
    return SynthSpec(**values)  # type: ignore[arg-type]


def add_synth_options(parser: argparse.ArgumentParser, *, defaults: SynthSpec | None = None,
                      title: str = "synthetic field") -> None:
    """``--cars --classes --laps --seed --session --fcy --sc --retirements --red
    --red-minutes``, shared."""
    d = defaults or SynthSpec()
    group = parser.add_argument_group(title)
    group.add_argument("--cars", type=int, default=d.cars, help=f"cars in the field ({d.cars})")
    group.add_argument("--classes", default=":".join(d.classes), metavar="A:B",
                       help=f"classes, fastest first, cars dealt in turn "
                            f"({':'.join(d.classes)}; known: {', '.join(CLASSES)})")
    group.add_argument("--laps", type=int, default=d.laps,
                       help=f"race distance; in qualifying each car's lap budget ({d.laps})")
    group.add_argument("--seed", type=int, default=d.seed,
                       help="the same seed gives the same session, byte for byte")
    group.add_argument("--session", choices=("race", "qualifying"), default=d.session)
    group.add_argument("--fcy", type=int, default=None, metavar="N",
                       help="full-course yellows (default: drawn from the fitted rate)")
    group.add_argument("--sc", type=int, default=None, metavar="N",
                       help="safety-car periods (default: drawn from the fitted rate)")
    group.add_argument("--retirements", type=float, default=d.retirements, metavar="F",
                       help=f"times the fitted retirement rate ({d.retirements:g}; 0: every "
                            "car runs to the flag, the event rate stays steady)")
    group.add_argument("--red", type=int, default=d.red, metavar="N",
                       help="race only: a red flag at minute N of session time, the race "
                            "suspended for --red-minutes (cars crawl to the pit lane and "
                            "wait; the lap through it is no best lap); default: none")
    group.add_argument("--red-minutes", type=int, default=d.red_minutes, metavar="M",
                       help=f"length of the --red period in minutes ({d.red_minutes})")


def spec_from_options(args: argparse.Namespace) -> SynthSpec:
    """The ``SynthSpec`` that ``add_synth_options``' options describe."""
    classes = tuple(c.strip().upper() for c in str(args.classes).split(":") if c.strip())
    return SynthSpec(cars=args.cars, classes=classes, laps=args.laps, seed=args.seed,
                     session=args.session, fcy=args.fcy, sc=args.sc,
                     retirements=args.retirements, red=getattr(args, "red", None),
                     red_minutes=getattr(args, "red_minutes", 30))


def source_from_options(source: str, args: argparse.Namespace) -> str:
    """A command's SOURCE: as given, or, when it is the bare word ``synth``, the
    ``synth:...`` spec that ``add_synth_options``' options describe."""
    return spec_from_options(args).text() if source == "synth" else source
