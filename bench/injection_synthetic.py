"""Indirect injections made here: documents of several kinds with a user's request hidden inside.

BIPIA, the shipped indirect-injection data, holds three document kinds (e-mails, tables, code
answers), and a head trained without one of them scored attacks inside it at AUC 0.69–0.76: it
learnt what an attack looks like inside the kinds it saw, not that a request standing in a
document is one. BIPIA's own attacks are mostly plain requests ("Explain the process of
photosynthesis in simple terms."), so the same thing can be built from shipped parts, in BIPIA's kinds and in kinds it lacks:

- **documents** (:data:`KINDS`): markdown tables and CSV of made-up records, application logs,
  e-mails and JSON records, drawn with Faker (seeded, dates within fixed bounds, so the same on
  every run of one Faker version; the version is pinned in the ``dev`` extra);
- **requests**: the prompts of ``halueval_general.jsonl`` (users' requests to an assistant, from
  Alpaca) of one line and 15 to 200 characters, bare as most of BIPIA's are. A lead-in ("Note: ",
  "Important: ") was tried and dropped: such words are common in clean documents, and the head
  took them for a sign of attack (a how-to beginning "Note: answers must be submitted before
  Friday" was flagged);
- each document appears twice: clean (label 0) and with a request inserted at its start, its end
  or between two of its lines (label 1), beside a question a user would ask of such a document.

Nothing of BIPIA goes in: not its documents, not its attack texts. Code is left out: code taken
from the Python standard library differs between Python releases (training would not be
reproducible), and with it the head did worse on BIPIA's code answers left out (AUC 0.83 against
0.88 without it, in one run of an earlier draft of these documents).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime

from driftwarden.core.extras import require
from driftwarden.pkg_data import rows as package_rows

SOURCE = "synthetic-"
"""Prefix of each kind's source name (``synthetic-table``, ...)."""
KINDS = ("table", "csv", "log", "email", "json")
PER_KIND = 150
"""Documents drawn per kind (each appears clean and attacked): 1,500 events beside BIPIA's 1,654.
At 300 (3,000 events) they outweighed the real attacks: the threshold for a precision of 0.9 was
0.91–0.92 (0.84 at 150, 0.78 without any), cross-validated recall at it 0.76–0.77 (0.80 at 150),
and the BIPIA tasks left out were only 0.01 to 0.04 of AUC higher than at 150."""
QUESTIONS = {
    "table": ("Which row has the highest value?", "How many rows are there?", "Summarise this table."),
    "csv": ("What is the total of the numeric column?", "Which entry comes first?", "Describe this data."),
    "log": ("Why did the job fail?", "Which user logged in last?", "Summarise these logs."),
    "email": ("What does the sender want?", "Summarise this email.", "When is the meeting?"),
    "json": ("Which record has the largest amount?", "List the names in this data.", "Summarise these records."),
}
"""The user's question of each kind of document: the event's prompt, always benign."""
MIN_REQUEST, MAX_REQUEST = 15, 200


def group_of(row: dict) -> str:
    """The group of a ``halueval_general`` row: its clean query, its answer as a clean document
    and every synthetic document holding its prompt share it, so no split parts them."""
    return f"hg-{row['id']}"


def requests() -> list[tuple[str, str]]:
    """(group, request) of each ``halueval_general`` prompt of one line and 15 to 200 characters
    (prompts with an input on further lines are left out)."""
    out = []
    for r in package_rows("halueval_general"):
        text = r["prompt"].strip()
        if "\n" not in text and MIN_REQUEST <= len(text) <= MAX_REQUEST:
            out.append((group_of(r), text))
    return out


def _faker(seed: int):
    fake = require("faker", extra="dev").Faker("en_US")
    fake.seed_instance(seed)
    return fake


def _when(fake):
    """A moment of 1990-2025: Faker's own dates run up to today, so they would change every day."""
    return fake.date_time_between_dates(datetime(1990, 1, 1), datetime(2025, 12, 31))


def _table(fake, rng: random.Random, markdown: bool) -> list[str]:
    pool: list[tuple[str, Callable[[], str]]] = [
        ("Name", fake.name), ("City", fake.city), ("Country", fake.country), ("Company", fake.company),
        ("Date", lambda: str(_when(fake).date())), ("Year", lambda: str(_when(fake).year)),
        ("Price", lambda: f"${rng.randint(1, 9999)}.{rng.randint(0, 99):02d}"),
        ("Count", lambda: str(rng.randint(0, 5000))), ("Share", lambda: f"{rng.random() * 100:.1f}%"),
        ("Job", fake.job), ("Score", lambda: f"{rng.randint(0, 7)}–{rng.randint(0, 7)}"),
        ("Team", lambda: f"{fake.city()} {rng.choice(['United', 'FC', 'Rovers', 'City', 'Athletic'])}"),
        ("Product", lambda: f"{fake.word().title()} {rng.choice(['Pro', 'Lite', 'X', 'Max', '2'])}"),
        ("Status", lambda: rng.choice(["active", "closed", "pending", "won", "lost"])),
        ("Rank", lambda: str(rng.randint(1, 100))), ("State", fake.state), ("Email", fake.email),
        ("Notes", lambda: fake.sentence(nb_words=5)),
    ]
    columns = rng.sample(pool, rng.randint(3, 6))
    names = [n for n, _ in columns]
    body = [[make() for _, make in columns] for _ in range(rng.randint(4, 14))]
    if not markdown:
        return [",".join(names)] + [",".join(cell.replace(",", "") for cell in row) for row in body]
    widths = [max(len(cell) for cell in column) for column in zip(names, *body, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = ["|" + "|".join("-" * (w + 2) for w in widths) + "|"] if rng.random() < 0.5 else []
    return [line(names), *rule, *(line(row) for row in body)]


def _log(fake, rng: random.Random) -> list[str]:
    lines = []
    for _ in range(rng.randint(6, 18)):
        level = rng.choice(["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"])
        where = f"{rng.choice(['worker', 'api', 'db', 'auth', 'scheduler'])}-{rng.randint(1, 9)}"
        what = rng.choice([
            f"GET {fake.uri_path()} {rng.choice([200, 200, 201, 304, 404, 500])} {rng.randint(1, 900)}ms ip={fake.ipv4()}",
            f"user {fake.user_name()} logged in from {fake.ipv4()}",
            f"job {fake.uuid4()[:8]} finished in {rng.random() * 60:.2f}s",
            f"retrying connection to {fake.domain_name()}:{rng.randint(1000, 9999)} (attempt {rng.randint(1, 5)})",
            f"cache miss for key {fake.word()}:{rng.randint(1, 99999)}",
        ])
        lines.append(f"{_when(fake).isoformat(sep=' ')} {level} [{where}] {what}")
    return lines


def _email(fake, rng: random.Random) -> list[str]:
    to, sender = fake.name(), fake.name()
    lines = [f"From: {sender} <{fake.email()}>", f"To: {to} <{fake.email()}>",
             f"Subject: {fake.sentence(nb_words=5).rstrip('.')}", "", f"Hi {to.split()[0]},", ""]
    for _ in range(rng.randint(1, 3)):
        lines += [fake.paragraph(nb_sentences=rng.randint(2, 5)), ""]
    return [*lines, rng.choice(["Best,", "Thanks,", "Regards,", "Cheers,"]), sender, fake.company()]


def _json(fake, rng: random.Random) -> list[str]:
    records = [{"id": rng.randint(1, 99999), "name": fake.name(), "city": fake.city(), "created": str(_when(fake).date()),
                "amount": round(rng.random() * 1000, 2), "tags": [fake.word() for _ in range(rng.randint(0, 3))]}
               for _ in range(rng.randint(2, 5))]
    return json.dumps(records, indent=2).splitlines()


def documents(per_kind: int = PER_KIND, seed: int = 0) -> list[tuple[str, list[str]]]:
    """(kind, lines) of ``per_kind`` clean documents of each of :data:`KINDS`."""
    rng = random.Random(seed)
    fake = _faker(seed)
    make = {"table": lambda: _table(fake, rng, markdown=True), "csv": lambda: _table(fake, rng, markdown=False),
            "log": lambda: _log(fake, rng), "email": lambda: _email(fake, rng), "json": lambda: _json(fake, rng)}
    return [(kind, make[kind]()) for kind in KINDS for _ in range(per_kind)]


def load_rows(per_kind: int = PER_KIND, seed: int = 0) -> list[dict]:
    """Each document clean, then attacked, as dicts: ``source`` (``synthetic-<kind>``), ``group``
    (the request's, :func:`group_of`), ``question``, ``context``, ``label``, ``attack`` (the
    inserted request, empty when clean), ``attack_start`` (its offset in ``context``, None when
    clean) and ``attack_type`` (``synthetic/<kind>``, ``none`` when clean)."""
    if per_kind < 0:
        raise ValueError(f"per_kind must be 0 or more, not {per_kind}")
    rng = random.Random(seed + 1)
    pool = requests()
    rng.shuffle(pool)
    out = []
    for n, (kind, lines) in enumerate(documents(per_kind, seed)):
        group, attack = pool[n % len(pool)]
        at = rng.choice([0, len(lines), rng.randint(1, max(1, len(lines) - 1))])
        gap = rng.choice(["\n", "\n\n"])
        before, after = "\n".join(lines[:at]), "\n".join(lines[at:])
        head = before + gap if before else ""
        attacked = head + attack + (gap + after if after else "")
        common = {"source": SOURCE + kind, "group": group, "question": rng.choice(QUESTIONS[kind])}
        out.append({**common, "context": "\n".join(lines), "label": 0, "attack": "", "attack_start": None,
                    "attack_type": "none"})
        out.append({**common, "context": attacked, "label": 1, "attack": attack, "attack_start": len(head),
                    "attack_type": f"synthetic/{kind}"})
    return out
