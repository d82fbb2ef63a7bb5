"""Write ``wec-2023-bahrain-qualifying.toml``: the published facts, and laps generated around them.

Run from the repository root (the TOML is committed; re-running rewrites the same file)::

    .venv/bin/python scenarios/make_bahrain_2023.py

What is published (``../shared/seed/FACTS.md`` and the reports it lists) is written as
``published`` or ``seed``; everything else (the laps around the best laps, their
sectors, the pit stops, the traffic, the times FACTS leaves open, the #7 lap
deleted after the art. 12.2 investigation) is generated here, deterministically
from one seed per car, and marked ``synthesized``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from simulator.timefmt import format_ms, parse_ms

SEED: Final = 2023
OUT: Final = Path(__file__).with_name("wec-2023-bahrain-qualifying.toml")

HYPERCAR, LMP2, GTE = "HYPERCAR", "LMP2", "LMGTE Am"
# The three class sessions (wec-magazin.com calendar, CET +2 h = Bahrain time):
# LMGTE 17:10-17:25, LMP2 17:35-17:50, Hypercar 18:00-18:15 local, Friday 3 Nov 2023.
SEGMENTS: Final = {GTE: 0, LMP2: 25 * 60_000, HYPERCAR: 50 * 60_000}
SEGMENT_MS: Final = 15 * 60_000
SESSION_MS: Final = 65 * 60_000


@dataclass(frozen=True)
class Car:
    car: str
    car_class: str
    team: str
    manufacturer: str
    drivers: tuple[str, ...]
    source: str  # of the entry
    entry_synth: tuple[str, ...]  # entry keys synthesized anyway
    best: str  # best lap
    best_source: str  # of the best lap's time
    driver: str  # on the best lap
    note: str = ""


# fmt: off
CARS: Final = [
    # Hypercar: order and times of P1-P4 published, P5/P6 by the seed, the three
    # remaining Porsches P7-P9 with #99 8th and the Peugeots #93 10th, #94 11th as
    # ansa.it reported them, Vanwall last more than 4 s off; other times synthesized.
    Car("8", HYPERCAR, "Toyota Gazoo Racing", "Toyota",
        ("Sébastien Buemi", "Brendon Hartley", "Ryo Hirakawa"), "published", (),
        "1:46.564", "seed", "Brendon Hartley", "pole, the only lap under 1:47"),
    Car("7", HYPERCAR, "Toyota Gazoo Racing", "Toyota",
        ("Mike Conway", "Kamui Kobayashi", "José María López"), "published", (),
        "1:47.053", "published", "Kamui Kobayashi", "P2 +0.489"),
    Car("2", HYPERCAR, "Cadillac Racing", "Cadillac",
        ("Earl Bamber", "Alex Lynn", "Richard Westbrook"), "published", (),
        "1:47.265", "seed", "Alex Lynn", "P3 +0.701, set early"),
    Car("6", HYPERCAR, "Porsche Penske Motorsport", "Porsche",
        ("Kévin Estre", "André Lotterer", "Laurens Vanthoor"), "published", (),
        "1:47.712", "published", "Kévin Estre", "P4 +1.148"),
    Car("50", HYPERCAR, "Ferrari AF Corse", "Ferrari",
        ("Antonio Fuoco", "Miguel Molina", "Nicklas Nielsen"), "published", (),
        "1:47.853", "synthesized", "Antonio Fuoco", "P5 (seed), time synthesized"),
    Car("51", HYPERCAR, "Ferrari AF Corse", "Ferrari",
        ("Alessandro Pier Guidi", "James Calado", "Antonio Giovinazzi"), "published", (),
        "1:47.981", "synthesized", "Alessandro Pier Guidi", "P6 (seed), time synthesized"),
    Car("5", HYPERCAR, "Porsche Penske Motorsport", "Porsche",
        ("Dane Cameron", "Michael Christensen", "Frédéric Makowiecki"), "published",
        ("drivers",), "1:48.126", "synthesized", "Frédéric Makowiecki", "P7 synthesized"),
    Car("99", HYPERCAR, "Proton Competition", "Porsche",
        ("Gianmaria Bruni", "Harry Tincknell", "Neel Jani"), "published", ("drivers",),
        "1:48.294", "synthesized", "Gianmaria Bruni", "P8 (ansa.it)"),
    Car("38", HYPERCAR, "Hertz Team Jota", "Porsche",
        ("António Félix da Costa", "Will Stevens", "Yifei Ye"), "published", ("drivers",),
        "1:48.417", "synthesized", "António Félix da Costa", "P9 synthesized"),
    Car("93", HYPERCAR, "Peugeot TotalEnergies", "Peugeot",
        ("Paul di Resta", "Mikkel Jensen", "Jean-Éric Vergne"), "published", ("drivers",),
        "1:48.602", "synthesized", "Paul di Resta", "P10 (ansa.it)"),
    Car("94", HYPERCAR, "Peugeot TotalEnergies", "Peugeot",
        ("Loïc Duval", "Gustavo Menezes", "Nico Müller"), "published", ("drivers",),
        "1:48.857", "synthesized", "Nico Müller", "P11 (ansa.it)"),
    Car("4", HYPERCAR, "Floyd Vanwall Racing Team", "Vanwall",
        ("Tom Dillmann", "Esteban Guerrieri", "Ryan Briscoe"), "published", ("drivers",),
        "1:50.871", "synthesized", "Tom Dillmann", "P12, more than 4 s off (published)"),
    # LMP2 (all Oreca 07-Gibson): P1/P2 and their gap by the seed; P3-P6 by the seed and
    # the reports, about a tenth between P3 and P6; #41 10th; the rest synthesized.
    Car("23", LMP2, "United Autosports", "Oreca",
        ("Josh Pierson", "Tom Blomqvist", "Oliver Jarvis"), "published", (),
        "1:52.290", "seed", "Tom Blomqvist", "pole"),
    Car("36", LMP2, "Alpine Elf Team", "Oreca",
        ("Julien Canal", "Charles Milesi", "Matthieu Vaxivière"), "published", ("drivers",),
        "1:52.561", "seed", "Charles Milesi", "P2 +0.271"),
    Car("31", LMP2, "Team WRT", "Oreca",
        ("Sean Gelael", "Ferdinand Habsburg", "Robin Frijns"), "published", ("drivers",),
        "1:52.742", "synthesized", "Robin Frijns", "P3 (seed)"),
    Car("10", LMP2, "Vector Sport", "Oreca",
        ("Gabriel Aubry", "Ryan Cullen", "Matthias Kaiser"), "published", ("drivers",),
        "1:52.776", "synthesized", "Gabriel Aubry", "P4 (published)"),
    Car("22", LMP2, "United Autosports", "Oreca",
        ("Philip Hanson", "Filipe Albuquerque", "Frederick Lubin"), "published",
        ("drivers",), "1:52.809", "synthesized", "Filipe Albuquerque", "P5 (published)"),
    Car("9", LMP2, "Prema Racing", "Oreca",
        ("Filip Ugran", "Bent Viscaal", "Juan Manuel Correa"), "published", ("drivers",),
        "1:52.843", "synthesized", "Bent Viscaal", "P6, about a tenth off P3 (seed)"),
    Car("28", LMP2, "Jota", "Oreca",
        ("David Heinemeier Hansson", "Oliver Rasmussen", "Pietro Fittipaldi"), "published",
        ("drivers",), "1:53.038", "synthesized", "Oliver Rasmussen", "P7 synthesized"),
    Car("34", LMP2, "Inter Europol Competition", "Oreca",
        ("Jakub Śmiechowski", "Albert Costa", "Fabio Scherer"), "published", ("drivers",),
        "1:53.164", "synthesized", "Albert Costa", "P8 synthesized"),
    Car("35", LMP2, "Alpine Elf Team", "Oreca",
        ("André Negrão", "Memo Rojas", "Olli Caldwell"), "published", ("drivers",),
        "1:53.297", "synthesized", "André Negrão", "P9 synthesized"),
    Car("41", LMP2, "Team WRT", "Oreca",
        ("Rui Andrade", "Robert Kubica", "Louis Delétraz"), "published", (),
        "1:53.512", "synthesized", "Louis Delétraz", "P10 (seed), class leaders"),
    Car("63", LMP2, "Prema Racing", "Oreca",
        ("Daniil Kvyat", "Mirko Bortolotti", "Doriane Pin"), "published", ("drivers",),
        "1:53.806", "synthesized", "Daniil Kvyat", "P11 synthesized"),
    # LMGTE Am: #85 pole and #777 about three tenths behind by the seed, #25 and #57 ahead
    # of #33 5th; the other nine entries and their order synthesized (FACTS: the 2023
    # season entry list; it.wikipedia counts 13 LMGTE Am entries at Bahrain, FACTS 14).
    Car("85", GTE, "Iron Dames", "Porsche",
        ("Sarah Bovy", "Rahel Frey", "Michelle Gatting"), "published", ("drivers",),
        "1:58.692", "seed", "Sarah Bovy", "pole"),
    Car("777", GTE, "D'Station Racing", "Aston Martin",
        ("Tomonobu Fujii", "Casper Stevenson", "Liam Talbot"), "published", ("drivers",),
        "1:58.978", "synthesized", "Liam Talbot", "P2, about +0.3 (seed)"),
    Car("25", GTE, "ORT by TF", "Aston Martin",
        ("Ahmad Al Harthy", "Michael Dinan", "Charlie Eastwood"), "published", ("drivers",),
        "1:59.143", "synthesized", "Ahmad Al Harthy", "P3/P4 (seed), order synthesized"),
    Car("57", GTE, "Kessel Racing", "Ferrari",
        ("Takeshi Kimura", "Daniel Serra", "Esteban Masson"), "published", ("drivers",),
        "1:59.301", "synthesized", "Takeshi Kimura", "P3/P4 (seed), order synthesized"),
    Car("33", GTE, "Corvette Racing", "Chevrolet",
        ("Nicky Catsburg", "Ben Keating", "Nicolás Varrone"), "published", (),
        "1:59.388", "synthesized", "Ben Keating", "P5 (seed)"),
    Car("54", GTE, "AF Corse", "Ferrari",
        ("Thomas Flohr", "Francesco Castellacci", "Davide Rigon"), "synthesized", (),
        "1:59.512", "synthesized", "Thomas Flohr"),
    Car("83", GTE, "Richard Mille AF Corse", "Ferrari",
        ("Luis Pérez Companc", "Alessio Rovera", "Lilou Wadoux"), "synthesized", (),
        "1:59.688", "synthesized", "Luis Pérez Companc"),
    Car("98", GTE, "NorthWest AMR", "Aston Martin",
        ("Paul Dalla Lana", "Nicki Thiim", "Axcil Jefferies"), "synthesized", (),
        "1:59.745", "synthesized", "Paul Dalla Lana"),
    Car("77", GTE, "Dempsey-Proton Racing", "Porsche",
        ("Christian Ried", "Mikkel O. Pedersen", "Julien Andlauer"), "synthesized", (),
        "1:59.901", "synthesized", "Christian Ried"),
    Car("56", GTE, "Project 1 - AO", "Porsche",
        ("PJ Hyett", "Gunnar Jeannette", "Matteo Cairoli"), "synthesized", (),
        "2:00.116", "synthesized", "PJ Hyett"),
    Car("86", GTE, "GR Racing", "Porsche",
        ("Michael Wainwright", "Riccardo Pera", "Ben Barker"), "synthesized", (),
        "2:00.342", "synthesized", "Michael Wainwright"),
    Car("60", GTE, "Iron Lynx", "Porsche",
        ("Claudio Schiavoni", "Matteo Cressoni", "Franck Perera"), "synthesized", (),
        "2:00.507", "synthesized", "Claudio Schiavoni"),
    Car("21", GTE, "AF Corse", "Ferrari",
        ("Simon Mann", "Ulysse de Pauw", "Franck Dezoteux"), "synthesized", (),
        "2:00.729", "synthesized", "Simon Mann"),
    Car("88", GTE, "Proton Competition", "Porsche",
        ("Ryan Hardwick", "Zacharie Robichon", "Jan Heylen"), "synthesized", (),
        "2:01.034", "synthesized", "Ryan Hardwick"),
]
# fmt: on


@dataclass
class Lap:
    ms: int
    note: str = ""
    in_pit: bool = False
    pit_ms: int | None = None
    source: str | None = None  # None: the car's ("synthesized")
    valid: bool = True
    sectors: tuple[int, int, int] = (0, 0, 0)


@dataclass
class Plan:
    car: Car
    start_ms: int
    laps: list[Lap] = field(default_factory=list)


# Bahrain's three sectors share a flying lap about 31 / 40 / 29 %.
SHARE: Final = (0.31, 0.40)


def split(rng: random.Random, ms: int, pit_ms: int | None = None) -> tuple[int, int, int]:
    """Sector times adding up exactly to ``ms``; a pit stop lands in the first sector."""
    flying = ms - (pit_ms or 0)
    s1 = round(flying * (SHARE[0] + rng.uniform(-0.004, 0.004))) + (pit_ms or 0)
    s2 = round(flying * (SHARE[1] + rng.uniform(-0.004, 0.004)))
    return s1, s2, ms - s1 - s2


def scaled(rng: random.Random, best: int, low: float, high: float) -> int:
    return round(best * rng.uniform(low, high))


def generic_plan(car: Car) -> Plan:
    """Out-lap, a first run, in-lap, new tyres, a second run with the best lap, in-lap."""
    rng = random.Random(f"{SEED}-{car.car}")
    best = parse_ms(car.best)
    seg = SEGMENTS[car.car_class]
    end = seg + SEGMENT_MS
    while True:
        start = seg + rng.randrange(15_000, 95_000)
        laps = [Lap(scaled(rng, best, 1.16, 1.24), "out-lap")]
        for _ in range(rng.choice((1, 2, 2))):
            if rng.random() < 0.35:
                laps.append(Lap(best + rng.randrange(1_500, 4_200), "traffic"))
            else:
                laps.append(Lap(best + rng.randrange(250, 1_300)))
        laps.append(Lap(scaled(rng, best, 1.13, 1.20), "in-lap", in_pit=True))
        pit = rng.randrange(95_000, 190_000)
        laps.append(Lap(pit + scaled(rng, best, 1.10, 1.15), "out-lap, new tyres", pit_ms=pit))
        second = [Lap(best, "best lap", source=car.best_source)]
        extra = Lap(best + rng.randrange(150, 900))
        second.insert(rng.randrange(2), extra)
        laps.extend(second)
        laps.append(Lap(scaled(rng, best, 1.13, 1.20), "in-lap", in_pit=True))
        # Every lap but the last must start before the class's flag; the in-lap may
        # start after it (a cool-down lap, which then counts for nothing).
        t = start
        fits = True
        for lap in laps[:-1]:
            if t >= end:
                fits = False
            t += lap.ms
        if fits:
            laps[-1].valid = t < end
            if not laps[-1].valid:
                laps[-1].note = "cool-down lap after the flag"
            break
    for lap in laps:
        lap.sectors = split(rng, lap.ms, lap.pit_ms)
    return Plan(car, start, laps)


def ms(text: str) -> int:
    return parse_ms(text)


def scripted_plans(cars: dict[str, Car]) -> dict[str, Plan]:
    """The Hypercar front: #2 fastest early, the Toyotas 1-2, #7's lap that is deleted later."""
    seg = SEGMENTS[HYPERCAR]
    plans = {
        "2": Plan(cars["2"], seg + ms("12.000"), [
            Lap(ms("2:06.800"), "out-lap"),
            Lap(ms("1:47.265"), "fastest early, best lap", source="seed"),
            Lap(ms("1:48.907"), "traffic"),
            Lap(ms("2:02.412"), "cool-down"),
            Lap(ms("1:47.489")),
            Lap(ms("2:04.931"), "in-lap", in_pit=True),
        ]),
        "7": Plan(cars["7"], seg + ms("28.000"), [
            Lap(ms("2:07.400"), "out-lap"),
            Lap(ms("1:47.053"), "best lap once lap 4 is deleted", source="published"),
            Lap(ms("1:59.900"), "cool-down"),
            Lap(ms("1:46.402"), "provisional pole, deleted after the art. 12.2 investigation"),
            Lap(ms("2:05.000"), "in-lap", in_pit=True),
            Lap(ms("3:43.400"), "out-lap, new tyres", pit_ms=ms("1:40.000")),
            Lap(ms("1:47.287"), "the lap the flag finds it on"),
            Lap(ms("2:05.500"), "cool-down lap after the flag", in_pit=True, valid=False),
        ]),
        "8": Plan(cars["8"], seg + ms("35.000"), [
            Lap(ms("2:07.900"), "out-lap"),
            Lap(ms("1:47.018"), "Toyota 1-2"),
            Lap(ms("1:46.564"), "pole (on mediums)", source="seed"),
            Lap(ms("2:05.300"), "in-lap", in_pit=True),
            Lap(ms("4:13.100"), "out-lap, new tyres", pit_ms=ms("2:10.000")),
            Lap(ms("1:47.131")),
            Lap(ms("2:04.700"), "in-lap", in_pit=True),
        ]),
    }
    for plan in plans.values():
        rng = random.Random(f"{SEED}-{plan.car.car}-sectors")
        for lap in plan.laps:
            lap.sectors = split(rng, lap.ms, lap.pit_ms)
    return plans


DELETED_LAP: Final = ("7", 4, SEGMENTS[HYPERCAR] + ms("13:20.000"))


# --- writing ------------------------------------------------------------------------------

def q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def t(ms_: int) -> str:
    """A time as the scenario writes it: ``33.512``, ``1:46.564``, ``1:03:20.000``."""
    if ms_ < 60_000:
        return f"{ms_ // 1000}.{ms_ % 1000:03d}"
    return format_ms(ms_)


def entry_toml(car: Car) -> str:
    lines = ["[[entries]]", f"car = {q(car.car)}", f"class = {q(car.car_class)}",
             f"team = {q(car.team)}", f"manufacturer = {q(car.manufacturer)}",
             "drivers = [" + ", ".join(q(d) for d in car.drivers) + "]",
             f"source = {q(car.source)}"]
    if car.entry_synth:
        lines.append("synthesized = [" + ", ".join(q(k) for k in car.entry_synth) + "]")
    return "\n".join(lines)


def laps_toml(plan: Plan) -> str:
    car = plan.car
    head = [f"[[cars]]  # #{car.car} {car.team}: best {car.best}"
            + (f" ({car.note})" if car.note else ""),
            f"car = {q(car.car)}", f"driver = {q(car.driver)}",
            f"start = {q(t(plan.start_ms))}  # leaves the pit lane",
            'source = "synthesized"', "laps = ["]
    at = plan.start_ms
    for i, lap in enumerate(plan.laps, 1):
        at += lap.ms
        fields = [f"lap = {i}", f"time = {q(t(lap.ms))}",
                  "sectors = [" + ", ".join(q(t(s)) for s in lap.sectors) + "]"]
        if lap.in_pit:
            fields.append("in_pit = true")
        if lap.pit_ms is not None:
            fields.append(f"pit_time = {q(t(lap.pit_ms))}")
        if not lap.valid:
            fields.append("valid = false")
        if lap.source and lap.source != "synthesized":
            fields += [f"source = {q(lap.source)}", 'synthesized = ["sectors"]']
        note = f"  # {format_ms(at, hours=True)}" + (f" {lap.note}" if lap.note else "")
        head.append("  { " + ", ".join(fields) + " }," + note)
    head.append("]")
    return "\n".join(head)


HEADER: Final = '''\
# WEC 2023, round 7, 8 Hours of Bahrain: qualifying (Friday 3 November 2023, night, dry).
#
# Written by scenarios/make_bahrain_2023.py (seed {seed}); edit that, then re-run it.
# Facts: ../shared/seed/FACTS.md and the reports it lists. Every table says where its
# values come from (source = "seed" | "published" | "synthesized"; `synthesized` lists
# keys made up anyway). Published: each car's best lap time where FACTS gives it, the
# order of each class, the gaps, the drivers on those laps, the championship before
# the round and the points rules. Synthesized: every other lap, the sectors, the pit
# stops and traffic, the times FACTS leaves open (within the published order), and
# the #7 lap deleted after the art. 12.2 investigation (the real case was an
# investigation after qualifying; it is modelled as a faster #7 lap that stands as
# provisional pole until its LapDeleted).
#
# Session structure: the three class qualifying sessions of 15 minutes each, at
# 17:10 (LMGTE Am), 17:35 (LMP2) and 18:00 (Hypercar) local time (wec-magazin.com
# calendar, CET + 2 h), are one lapcast session of 65 minutes with a segment per
# class. FACTS dates the session Thursday 2 November; the published calendar and the
# reports (ansa.it, 3 November) put it on Friday 3 November.

format = 1

[session]
id = "wec-2023-bahrain-qualifying"
series = "FIA World Endurance Championship"
event = "8 Hours of Bahrain 2023"
kind = "qualifying"
scheduled_start = "2023-11-03T17:10:00+03:00"
time_zone = "Asia/Bahrain"
duration = "1:05:00.000"
sectors = 3
classes = ["HYPERCAR", "LMP2", "LMGTE Am"]
source = "published"
synthesized = ["sectors"]

[[session.segments]]
classes = ["LMGTE Am"]
start = "0:00.000"
duration = "15:00.000"
source = "published"

[[session.segments]]
classes = ["LMP2"]
start = "25:00.000"
duration = "15:00.000"
source = "published"

[[session.segments]]
classes = ["HYPERCAR"]
start = "50:00.000"
duration = "15:00.000"
source = "published"
'''

CHAMPIONSHIP: Final = '''\
# The Hypercar drivers' championship before the round. #8 133 and #7 118 (15 behind,
# the seed); #51 102 and #50 97 from the final standings (114 - 12 for 6th, 120 - 23 for
# 3rd). Countback: #8 2 wins, #7 3 (published); the Ferraris' places are synthesized.
# Only wins are listed: the stakes of this round never go further down the countback.
[championship]
name = "Hypercar World Endurance Drivers' Championship"
rounds_remaining = 0
source = "published"
synthesized = ["name"]

[championship.rules]
class = "HYPERCAR"
# 8-hour race: 1.5 x 25-18-15-12-10-8-6-4-2-1, halves rounded up (22.5 -> 23).
race_points = [38, 27, 23, 18, 15, 12, 9, 6, 3, 2]
pole_points = 1
source = "published"

[[championship.standings]]
car = "8"
name = "Buemi / Hartley / Hirakawa"
points = 133
places = [2]
source = "published"

[[championship.standings]]
car = "7"
name = "Conway / Kobayashi / López"
points = 118
places = [3]
source = "published"

[[championship.standings]]
car = "51"
name = "Pier Guidi / Calado / Giovinazzi"
points = 102
places = [1]
source = "published"
synthesized = ["places"]

[[championship.standings]]
car = "50"
name = "Fuoco / Molina / Nielsen"
points = 97
places = [0]
source = "published"
synthesized = ["places"]
'''


def render() -> str:
    cars = {c.car: c for c in CARS}
    scripted = scripted_plans(cars)
    plans = [scripted.get(c.car) or generic_plan(c) for c in CARS]
    car, lap, at = DELETED_LAP
    parts = [HEADER.format(seed=SEED), "# --- entry list ---"]
    parts += [entry_toml(c) for c in CARS]
    parts.append("# --- laps: times are m:ss.fff; each crossing is the car's start plus its lap "
                 "times so far (the comment shows it) ---")
    parts += [laps_toml(p) for p in plans]
    parts.append(f'''# --- corrections ---
[[corrections]]
kind = "LapDeleted"
at = {q(format_ms(at, hours=True))}
car = {q(car)}
lap = {lap}
reason = "art. 12.2 investigation: lap time deleted"
source = "synthesized"''')
    parts.append(CHAMPIONSHIP)
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def main() -> None:
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
