"""Built-in tasks generated from a seed: no downloads, and domains a router can tell apart.

Four domains of clearly different form:

- ``qa``     extractive QA over short generated biographies (answer: a span of the passage);
- ``arith``  one- and two-step arithmetic word problems (answer: a number);
- ``units``  metric unit conversion (answer: a number);
- ``dates``  calendar arithmetic and weekdays (answer: a short text).

Each has train / validation / test splits and an out-of-domain variant (``qa-ood`` etc.) with new
templates *and* new vocabulary (sports reports instead of biographies, rates and money instead
of counting objects, time / imperial units instead of metric, weekday and month arithmetic
instead of day offsets), marked ``ood=True``. Generation is a pure function of (task, variant,
split, seed); questions never repeat across the splits of one task.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from decimal import Decimal

from ..errors import DataError
from .schema import SPLITS, make_example, seeded_rng

TASKS = ("qa", "arith", "units", "dates")
DEFAULT_TRAIN = 500
DEFAULT_EVAL = 100
MAX_PER_SPLIT = 50_000  # examples per task and split (?n= / ?n_eval=): generation is not free

Row = tuple[str, str, str]  # (question, context, answer)


# ---------------------------------------------------------------------------------------------
# qa: biographies (in-domain) / match reports (ood)

FIRST = ["Mara", "Tobin", "Elsa", "Rafe", "Nina", "Oskar", "Lena", "Jonas", "Ivy", "Milo", "Greta", "Hugo",
         "Talia", "Felix", "Rosa", "Anton", "Clara", "Emil", "Lydia", "Pavel"]
LAST = ["Quill", "Harrow", "Bellamy", "Thorne", "Ashdown", "Crane", "Whitlock", "Fenn", "Marlow", "Greaves",
        "Pike", "Holloway", "Sterling", "Vance", "Rook", "Calder"]
TOWNS = ["Elmsford", "Brackwater", "Dunmere", "Ostwick", "Fairholt", "Lindenmoor", "Ravensby", "Corrin Bay",
         "Millbrook", "Eastvale", "Stonegate", "Harwell"]
JOBS = ["baker", "carpenter", "nurse", "librarian", "pilot", "gardener", "tailor", "chemist", "potter",
        "teacher", "violinist", "surveyor"]
PETS = ["dog", "cat", "parrot", "tortoise", "rabbit", "goat"]
PET_NAMES = ["Biscuit", "Pepper", "Juniper", "Waffles", "Comet", "Maple", "Ziggy", "Noodle", "Clover", "Rusty"]
COLOURS = ["teal", "crimson", "amber", "violet", "olive", "silver", "navy", "coral"]
INSTRUMENTS = ["cello", "banjo", "flute", "accordion", "harp", "trumpet"]


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _qa(rng: random.Random) -> Row:
    people = []
    for _ in range(2):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        while any(p["name"] == name for p in people):
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        people.append({
            "name": name, "town": rng.choice(TOWNS), "job": rng.choice(JOBS), "year": str(rng.randint(1950, 2004)),
            "pet": rng.choice(PETS), "pet_name": rng.choice(PET_NAMES), "colour": rng.choice(COLOURS),
            "instrument": rng.choice(INSTRUMENTS),
        })
        for k in ("colour", "job", "pet"):
            people[-1]["a_" + k] = _article(people[-1][k])
    facts = {
        "town": ["{name} lives in {town}.", "{name} moved to {town} several years ago."],
        "job": ["{name} works as {a_job}.", "By trade, {name} is {a_job}."],
        "year": ["{name} was born in {year}.", "{name}, born in {year}, grew up nearby."],
        "pet": ["{name} owns {a_pet} called {pet_name}.", "{name} looks after {a_pet} named {pet_name}."],
        "colour": ["{name} rides {a_colour} bicycle.", "{name}'s bicycle is painted {colour}."],
        "instrument": ["On weekends {name} plays the {instrument}.", "{name} is learning to play the {instrument}."],
    }
    questions = {
        "town": ["Where does {name} live?", "In which town does {name} live?"],
        "job": ["What does {name} do for a living?", "What is {name}'s job?"],
        "year": ["In what year was {name} born?", "When was {name} born?"],
        "pet": ["What is the name of {name}'s {pet}?", "What is {name}'s {pet} called?"],
        "colour": ["What colour is {name}'s bicycle?", "Which colour is the bicycle of {name}?"],
        "instrument": ["Which instrument does {name} play?", "What instrument is {name} learning?"],
    }
    sentences = []
    for p in people:
        keys = rng.sample(sorted(facts), 4)
        p["keys"] = keys
        sentences.extend(rng.choice(facts[k]).format(**p) for k in keys)
    context = " ".join(sentences)
    p = rng.choice(people)
    key = rng.choice(p["keys"])
    answer = p["pet_name"] if key == "pet" else p[key]
    return rng.choice(questions[key]).format(**p), context, answer


TEAMS = ["Harbor Owls", "Granite Foxes", "Northgate Comets", "Red Valley Bison", "Lakeside Herons",
         "Iron Hill Wolves", "Sunmeadow Larks", "Copperfield Rams"]
STADIUMS = ["Larkspur Stadium", "Riverside Arena", "Beacon Park", "the Old Mill Ground", "Kestrel Field"]
PLAYERS = ["Ivo Brand", "Sami Okafor", "Dario Lunde", "Kofi Mensah", "Yuki Tanabe", "Bram Olsen",
           "Lucas Ferreira", "Arjun Mehta"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
CROWD_WORDS = ["three thousand", "five thousand", "eight hundred", "twelve thousand", "nine hundred"]


def _qa_ood(rng: random.Random) -> Row:
    home, away = rng.sample(TEAMS, 2)
    win, lose = rng.randint(2, 5), rng.randint(0, 1)
    scorer, keeper = rng.sample(PLAYERS, 2)
    f = {"home": home, "away": away, "score": f"{win} to {lose}", "venue": rng.choice(STADIUMS),
         "day": rng.choice(DAYS), "scorer": scorer, "keeper": keeper, "crowd": rng.choice(CROWD_WORDS)}
    context = rng.choice([
        "The {home} beat the {away} {score} at {venue} on {day}. {scorer} scored twice for the winners, "
        "while goalkeeper {keeper} made several saves for the visitors. About {crowd} fans watched the game.",
        "On {day}, about {crowd} supporters saw the {home} defeat the {away} {score} at {venue}. "
        "Striker {scorer} found the net twice, and {keeper} kept the score respectable in goal for the {away}.",
    ]).format(**f)
    key, q = rng.choice([
        ("away", "Which team lost the match?"), ("home", "Which team won the match?"),
        ("venue", "Where was the match played?"), ("day", "On which day was the game played?"),
        ("scorer", "Who scored twice?"), ("keeper", "Who was the goalkeeper of the losing side?"),
        ("score", "What was the final score?"), ("crowd", "How many fans attended, in words?"),
    ])
    return q, context, f[key]


# ---------------------------------------------------------------------------------------------
# arith: counting objects (in-domain) / rates, money, temperatures (ood)

ITEMS = ["apples", "marbles", "stickers", "pencils", "cookies", "stamps", "shells", "buttons"]
NAMES = ["Tom", "Ava", "Liam", "Zoe", "Noah", "Mia", "Eli", "Ruby", "Sam", "Nora"]


def _arith(rng: random.Random) -> Row:
    name, friend = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.randint(5, 60), rng.randint(2, 40)
        c = rng.randint(1, a + b - 1)
        q = f"{name} has {a} {item}. {name} buys {b} more and gives {c} to {friend}. How many {item} does {name} have now?"
        ans = a + b - c
    elif kind == 1:
        a, b = rng.randint(2, 30), rng.randint(2, 12)
        q = f"{name} reads {a} pages every day for {b} days. How many pages does {name} read in total?"
        ans = a * b
    elif kind == 2:
        a, b = rng.randint(3, 25), rng.randint(2, 15)
        q = f"A box holds {a} {item}. How many {item} are there in {b} boxes?"
        ans = a * b
    elif kind == 3:
        b, k = rng.randint(2, 9), rng.randint(2, 15)
        q = f"{name} shares {b * k} {item} equally among {b} friends. How many {item} does each friend get?"
        ans = k
    else:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        q = f"{name} scored {a} points in the first game and {b} points in the second. How many points did {name} score altogether?"
        ans = a + b
    return q, "", str(ans)


def _arith_ood(rng: random.Random) -> Row:
    kind = rng.randrange(4)
    if kind == 0:
        a, b, c = rng.randint(40, 120), rng.randint(2, 6), rng.randint(5, 60)
        q = f"A train travels at {a} kilometres per hour for {b} hours and then covers another {c} kilometres. How far does it travel in total?"
        ans = a * b + c
    elif kind == 1:
        a, b = rng.randint(3, 25), rng.randint(2, 6)
        c = a * b + rng.randint(1, 30)
        q = f"A concert ticket costs ${a}. A family buys {b} tickets and pays with ${c}. How much change, in dollars, do they get?"
        ans = c - a * b
    elif kind == 2:
        b, c = rng.randint(2, 9), rng.randint(2, 8)
        a = b * c + rng.randint(0, 50)
        q = f"A water tank holds {a} litres. {b} litres leak out every hour. How many litres are left after {c} hours?"
        ans = a - b * c
    else:
        a, b = rng.randint(-5, 12), rng.randint(3, 20)
        q = f"At dawn the temperature was {a} degrees. By midnight it had fallen by {b} degrees. What is the temperature at midnight?"
        ans = a - b
    return q, "", str(ans)


# ---------------------------------------------------------------------------------------------
# units: metric (in-domain) / time and imperial (ood)

METRIC = [  # (big unit, small unit, factor)
    ("kilometres", "metres", 1000), ("metres", "centimetres", 100), ("kilograms", "grams", 1000),
    ("litres", "millilitres", 1000), ("centimetres", "millimetres", 10), ("tonnes", "kilograms", 1000),
]
OTHER = [
    ("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24), ("weeks", "days", 7),
    ("feet", "inches", 12), ("pounds", "ounces", 16), ("yards", "feet", 3), ("gallons", "quarts", 4),
]


def _num(x: Decimal) -> str:
    return format(x.normalize(), "f")


def _units(rng: random.Random) -> Row:
    big, small, factor = rng.choice(METRIC)
    if rng.random() < 0.5:
        x = Decimal(rng.randint(1, 120)) / (2 if rng.random() < 0.3 else 1)
        q = rng.choice(["Convert {x} {big} to {small}.", "How many {small} are in {x} {big}?"])
        return q.format(x=_num(x), big=big, small=small), "", _num(x * factor)
    y = Decimal(rng.randint(1, 120) * factor) / (2 if rng.random() < 0.3 else 1)
    q = rng.choice(["Convert {y} {small} to {big}.", "How many {big} is {y} {small}?"])
    return q.format(y=_num(y), big=big, small=small), "", _num(y / factor)


def _units_ood(rng: random.Random) -> Row:
    big, small, factor = rng.choice(OTHER)
    x = rng.randint(2, 150)
    q = rng.choice([
        "A recipe calls for {x} {big}. How many {small} is that?",
        "Something measures {x} {big}. What is that in {small}?",
        "Express {x} {big} in {small}.",
        "Tell me how many {small} make up {x} {big}.",
    ])
    return q.format(x=x, big=big, small=small), "", str(x * factor)


# ---------------------------------------------------------------------------------------------
# dates: day offsets (in-domain) / weekdays and months (ood)

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def _fmt_date(d: dt.date) -> str:
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"


def _dates(rng: random.Random) -> Row:
    start = dt.date(1990, 1, 1) + dt.timedelta(days=rng.randint(0, 365 * 40))
    if rng.random() < 0.25:
        return f"What day of the week was {_fmt_date(start)}?", "", DAYS[start.weekday()]
    n = rng.randint(1, 60)
    if rng.random() < 0.5:
        return f"What is the date {n} days after {_fmt_date(start)}?", "", _fmt_date(start + dt.timedelta(days=n))
    return f"What was the date {n} days before {_fmt_date(start)}?", "", _fmt_date(start - dt.timedelta(days=n))


def _dates_ood(rng: random.Random) -> Row:
    if rng.random() < 0.5:
        today, n = rng.randrange(7), rng.randint(2, 100)
        q = rng.choice([
            "Today is {d}. What day of the week will it be in {n} days?",
            "If it is {d} now, which weekday comes {n} days later?",
        ]).format(d=DAYS[today], n=n)
        return q, "", DAYS[(today + n) % 7]
    month, year, n = rng.randrange(12), rng.randint(1980, 2030), rng.randint(1, 30)
    total = month + n
    q = f"A lease starts in {MONTHS[month]} {year} and runs for {n} months. In which month and year does it end?"
    return q, "", f"{MONTHS[total % 12]} {year + total // 12}"


GENERATORS: dict[tuple[str, bool], tuple[Callable[[random.Random], Row], str]] = {
    ("qa", False): (_qa, "span"), ("qa", True): (_qa_ood, "span"),
    ("arith", False): (_arith, "number"), ("arith", True): (_arith_ood, "number"),
    ("units", False): (_units, "number"), ("units", True): (_units_ood, "number"),
    ("dates", False): (_dates, "text"), ("dates", True): (_dates_ood, "text"),
}  # fmt: skip


def builtin_names() -> list[str]:
    return [*TASKS, "all", *(f"{t}-ood" for t in TASKS), "all-ood"]


def parse_builtin(name: str) -> list[tuple[str, bool]]:
    """``arith`` / ``arith-ood`` / ``all`` / ``all-ood`` -> [(task, ood)]."""
    base, ood = (name[:-4], True) if name.endswith("-ood") else (name, False)
    if base == "all":
        return [(t, ood) for t in TASKS]
    if base not in TASKS:
        raise DataError(f"unknown built-in task {name!r}; known: {', '.join(builtin_names())}")
    return [(base, ood)]


def domain_name(task: str, ood: bool) -> str:
    return f"builtin-{task}" + ("-ood" if ood else "")


def generate_task(task: str, ood: bool, sizes: dict[str, int], seed: int = 0) -> dict[str, list[dict]]:
    """Examples of one task per split; test first, so held-out questions are fixed per seed
    whatever the train size, and no question appears in two splits."""
    gen, answer_type = GENERATORS[(task, ood)]
    domain = domain_name(task, ood)
    seen: set[tuple[str, str]] = set()
    out: dict[str, list[dict]] = {}
    for split in ("test", "validation", "train"):
        rng = seeded_rng("builtin", task, ood, split, seed)
        rows: list[dict] = []
        tries = 0
        while len(rows) < sizes.get(split, 0):
            tries += 1
            if tries > 200 * max(sizes.get(split, 0), 1):
                raise DataError(f"builtin:{task}: cannot generate {sizes[split]} distinct {split} examples")
            q, ctx, ans = gen(rng)
            if (q, ctx) in seen:
                continue
            seen.add((q, ctx))
            rows.append(make_example(id=f"{domain}-{split}-{len(rows)}", domain=domain, question=q, context=ctx,
                                     answers=[ans], answer_type=answer_type, split=split, ood=ood))
        out[split] = rows
    return {s: out[s] for s in SPLITS}
