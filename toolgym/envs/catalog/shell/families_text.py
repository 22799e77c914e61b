"""Shell task families about reading: command output, log analysis, text and CSV wrangling."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter

from toolgym.envs.catalog.shell.draft import CITIES, NAMES, WORDS, ShellDraft, lines, pick

# ---------------------------------------------------------------------- command output


def count_lines(rng: random.Random) -> ShellDraft:
    """How many lines a file has."""
    n = rng.randint(40, 400)
    body = lines([f"{rng.choice(NAMES)},{rng.randint(1, 99)}" for _ in range(n)])
    d = ShellDraft(category="output", files={"data/records.csv": body}, instruction="How many lines does data/records.csv have?")
    d.bash("wc -l < data/records.csv")
    d.outputs = [str(n)]
    d.answer = f"data/records.csv has {n} lines."
    return d


def largest_file(rng: random.Random) -> ShellDraft:
    """Which file of a folder is largest."""
    words = pick(rng, WORDS, 5)
    sizes = rng.sample(range(50, 5000), 5)
    files = {f"assets/{w}.dat": "x" * (s - 1) + "\n" for w, s in zip(words, sizes, strict=True)}
    big = words[sizes.index(max(sizes))]
    d = ShellDraft(category="output", files=files, instruction="Which file in assets/ is the largest, and how many bytes is it?")
    d.bash("ls -lS assets | head -n 2")
    d.outputs = [f"{big}.dat", str(max(sizes))]
    d.answer = f"assets/{big}.dat is the largest, {max(sizes)} bytes."
    return d


def count_source_files(rng: random.Random) -> ShellDraft:
    """Count .py files recursively, excluding a folder."""
    files, count = {}, 0
    for w in pick(rng, WORDS, 9):
        folder = rng.choice(("src", "src/core", "src/util", "tests", "src/core/io"))
        ext = rng.choice(("py", "py", "txt"))
        files[f"{folder}/{w}.{ext}"] = f"# {w}\n"
        count += ext == "py" and not folder.startswith("tests")
    d = ShellDraft(category="output", files=files, instruction="How many .py files are there under src/, counting all subfolders? (tests/ does not count.)")
    d.bash("find src -type f -name '*.py' | wc -l")
    d.outputs = [str(count)]
    d.answer = f"There are {count} .py files under src/."
    return d


def file_checksum(rng: random.Random) -> ShellDraft:
    """The SHA-256 of one file, to compare with a published checksum."""
    content = lines([f"{w} {rng.randint(0, 10**6)}" for w in pick(rng, WORDS, 6)])
    name = f"release-{rng.randint(1, 9)}.{rng.randint(0, 9)}.txt"
    digest = hashlib.sha256(content.encode()).hexdigest()
    d = ShellDraft(category="output", files={f"dist/{name}": content}, instruction=f"Give me the SHA-256 checksum of dist/{name} (hex).")
    d.bash(f"sha256sum dist/{name}")
    d.outputs = [digest]
    d.answer = f"sha256 of dist/{name}: {digest}"
    return d


def total_size(rng: random.Random) -> ShellDraft:
    """The total size in bytes of the .log files of a folder."""
    files, total = {}, 0
    for i, w in enumerate(pick(rng, WORDS, 6)):
        ext = "log" if i == 0 else rng.choice(("log", "log", "gz"))
        size = rng.randint(10, 900)
        files[f"var/{w}.{ext}"] = "y" * (size - 1) + "\n"
        total += size if ext == "log" else 0
    d = ShellDraft(category="output", files=files, instruction="What is the total size in bytes of all .log files directly in var/?")
    d.bash("cat var/*.log | wc -c")
    d.outputs = [str(total)]
    d.answer = f"The .log files in var/ take {total} bytes."
    return d


# ---------------------------------------------------------------------- logs

_LEVELS = ("INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG")
_COMPONENTS = ("auth", "db", "api", "cache", "billing")
_MESSAGES = ("timeout talking to upstream", "connection reset", "disk quota exceeded", "bad request payload", "token expired", "slow query")


def _app_log(rng: random.Random, n: int) -> list[tuple[str, str, str, str]]:
    out = []
    for i in range(n):
        stamp = f"2026-03-{1 + i // 100:02d}T{(i // 4) % 24:02d}:{(i * 7) % 60:02d}:{(i * 13) % 60:02d}"
        out.append((stamp, rng.choice(_LEVELS), rng.choice(_COMPONENTS), rng.choice(_MESSAGES)))
    return out


def _render(entries: list[tuple[str, str, str, str]]) -> str:
    return lines([f"{t} {lvl} [{comp}] {msg}" for t, lvl, comp, msg in entries])


def log_error_count(rng: random.Random) -> ShellDraft:
    """Count ERROR entries of one component."""
    entries = _app_log(rng, rng.randint(80, 200))
    comp = rng.choice(_COMPONENTS)
    n = sum(1 for _, lvl, c, _m in entries if lvl == "ERROR" and c == comp)
    d = ShellDraft(category="logs", files={"logs/app.log": _render(entries)}, instruction=f"How many ERROR entries does the [{comp}] component have in logs/app.log?")
    d.bash(f"grep -c ' ERROR \\[{comp}\\] ' logs/app.log")
    d.outputs = [str(n)]
    d.answer = f"[{comp}] logged {n} ERROR entries."
    return d


def log_extract_errors(rng: random.Random) -> ShellDraft:
    """Write the timestamps and messages of ERROR lines to a file."""
    entries = _app_log(rng, rng.randint(40, 90))
    want = [f"{t} {m}" for t, lvl, _c, m in entries if lvl == "ERROR"]
    d = ShellDraft(
        category="logs", files={"logs/app.log": _render(entries)},
        instruction="Write every ERROR entry of logs/app.log to errors.txt, one per line in log order, as '<timestamp> <message>' (drop the level and the [component]).",
    )
    d.bash("grep ' ERROR ' logs/app.log | sed -E 's/^([^ ]+) ERROR \\[[^]]*\\] /\\1 /' > errors.txt")
    d.expected_files = {"errors.txt": lines(want)}
    return d


def _access_log(rng: random.Random, n: int) -> tuple[str, list[tuple[str, str, int]]]:
    ips = [f"10.0.{rng.randint(0, 9)}.{rng.randint(1, 254)}" for _ in range(6)]
    weights = [rng.randint(1, 10) for _ in ips]
    rows = []
    for _ in range(n):
        ip = rng.choices(ips, weights)[0]
        path = rng.choice(("/", "/login", "/api/items", "/api/cart", "/static/app.js"))
        status = rng.choice((200, 200, 200, 301, 404, 500, 502, 503))
        rows.append((ip, path, status))
    text = lines([f'{ip} - - [12/Mar/2026:10:{i // 60 % 60:02d}:{i % 60:02d} +0000] "GET {p} HTTP/1.1" {s} {100 + i}' for i, (ip, p, s) in enumerate(rows)])
    return text, rows


def log_top_ip(rng: random.Random) -> ShellDraft:
    """The client IP with the most requests (ties broken by the seed until there is none)."""
    while True:
        text, rows = _access_log(rng, rng.randint(60, 160))
        top = Counter(ip for ip, _p, _s in rows).most_common(2)
        if len(top) == 1 or top[0][1] > top[1][1]:
            break
    ip, count = top[0]
    d = ShellDraft(category="logs", files={"logs/access.log": text}, instruction="Which client IP made the most requests in logs/access.log, and how many?")
    d.bash("awk '{print $1}' logs/access.log | sort | uniq -c | sort -rn | head -n 3")
    d.outputs = [ip, str(count)]
    d.answer = f"{ip} made the most requests: {count}."
    return d


def log_server_errors(rng: random.Random) -> ShellDraft:
    """Count 5xx responses to one path."""
    text, rows = _access_log(rng, rng.randint(80, 200))
    path = rng.choice(("/login", "/api/items", "/api/cart"))
    n = sum(1 for _ip, p, s in rows if p == path and s >= 500)
    d = ShellDraft(category="logs", files={"logs/access.log": text}, instruction=f"How many requests to {path} got a 5xx status in logs/access.log?")
    d.bash(f"awk '$7 == \"{path}\" && $9 >= 500' logs/access.log | wc -l")
    d.outputs = [str(n)]
    d.answer = f"{n} requests to {path} failed with 5xx."
    return d


def first_failed_login(rng: random.Random) -> ShellDraft:
    """The time of a user's first failed login in an auth log."""
    users = pick(rng, NAMES, 4)
    target = users[0]
    rows, first = [], None
    for i in range(rng.randint(40, 100)):
        user, ok = rng.choice(users), rng.random() < 0.6
        stamp = f"Mar 12 {8 + i // 30:02d}:{(i * 2) % 60:02d}:{(i * 17) % 60:02d}"
        rows.append(f"{stamp} host sshd[{1000 + i}]: {'Accepted' if ok else 'Failed'} password for {user} from 10.1.0.{i % 250 + 1}")
        if not ok and user == target and first is None:
            first = stamp
    if first is None:  # make sure the user failed once
        first = "Mar 12 23:59:59"
        rows.append(f"{first} host sshd[9999]: Failed password for {target} from 10.1.0.9")
    d = ShellDraft(category="logs", files={"logs/auth.log": lines(rows)}, instruction=f"When did {target} first fail to log in, according to logs/auth.log? Give the timestamp as written in the log.")
    d.bash(f"grep -m1 'Failed password for {target} ' logs/auth.log")
    d.outputs = [first]
    d.answer = f"{target} first failed at {first}."
    return d


# ---------------------------------------------------------------------- text and CSV


def _sales(rng: random.Random, n: int) -> list[tuple[str, str, int, int]]:
    cats = ("books", "garden", "toys", "tools")
    return [(f"ord-{1000 + i}", rng.choice(cats), rng.randint(1, 20), rng.randint(100, 9999)) for i in range(n)]


def _sales_csv(rows: list[tuple[str, str, int, int]]) -> str:
    return "id,category,qty,price_cents\n" + lines([f"{a},{b},{c},{e}" for a, b, c, e in rows])


def csv_sum(rng: random.Random) -> ShellDraft:
    """Sum a column over the rows of one category."""
    rows = _sales(rng, rng.randint(20, 60))
    cat = rng.choice([r[1] for r in rows])
    total = sum(q for _i, c, q, _p in rows if c == cat)
    d = ShellDraft(category="text", files={"sales.csv": _sales_csv(rows)}, instruction=f"In sales.csv, what is the total qty over all '{cat}' rows?")
    d.bash(f"awk -F, 'NR > 1 && $2 == \"{cat}\" {{s += $3}} END {{print s}}' sales.csv")
    d.outputs = [str(total)]
    d.answer = f"The '{cat}' rows add up to qty {total}."
    return d


def csv_filter(rng: random.Random) -> ShellDraft:
    """Keep the rows above a threshold, with the header."""
    rows = _sales(rng, rng.randint(15, 40))
    limit = rng.randint(5, 15)
    d = ShellDraft(category="text", files={"sales.csv": _sales_csv(rows)}, instruction=f"Write big.csv with the header of sales.csv and only the rows whose qty is greater than {limit}, in the original order.")
    d.bash(f"awk -F, 'NR == 1 || $3 > {limit}' sales.csv > big.csv")
    d.expected_files = {"big.csv": _sales_csv([r for r in rows if r[2] > limit]), "sales.csv": _sales_csv(rows)}
    return d


def csv_sort(rng: random.Random) -> ShellDraft:
    """Sort rows by a numeric column, descending, ties by name."""
    names = pick(rng, NAMES, rng.randint(6, 10))
    rows = [(n, rng.randint(50, 100)) for n in names]
    text = "name,score\n" + lines([f"{n},{s}" for n, s in rows])
    ranked = sorted(rows, key=lambda r: (-r[1], r[0]))
    d = ShellDraft(category="text", files={"scores.csv": text}, instruction="Write ranked.csv: scores.csv sorted by score from highest to lowest (equal scores by name A-Z), header kept on top.")
    d.bash("{ head -n 1 scores.csv; tail -n +2 scores.csv | LC_ALL=C sort -t, -k2,2nr -k1,1; } > ranked.csv")
    d.expected_files = {"ranked.csv": "name,score\n" + lines([f"{n},{s}" for n, s in ranked])}
    return d


def unique_cities(rng: random.Random) -> ShellDraft:
    """The distinct values of a column, sorted."""
    rows = [(rng.choice(NAMES), rng.choice(CITIES[:8])) for _ in range(rng.randint(15, 40))]
    text = "customer,city\n" + lines([f"{n},{c}" for n, c in rows])
    d = ShellDraft(category="text", files={"customers.csv": text}, instruction="Write cities.txt listing each distinct city of customers.csv once, sorted alphabetically, one per line.")
    d.bash("tail -n +2 customers.csv | cut -d, -f2 | LC_ALL=C sort -u > cities.txt")
    d.expected_files = {"cities.txt": lines(sorted({c for _n, c in rows}))}
    return d


def dedupe_keep_order(rng: random.Random) -> ShellDraft:
    """Drop repeated lines but keep the first occurrence order (not sorted)."""
    emails = [f"{n}@example.com" for n in pick(rng, NAMES, 7)]
    seq = [rng.choice(emails) for _ in range(rng.randint(15, 30))]
    d = ShellDraft(category="text", files={"signups.txt": lines(seq)}, instruction="Write unique.txt with the lines of signups.txt without repeats, keeping the order in which each first appears.")
    d.bash("awk '!seen[$0]++' signups.txt > unique.txt")
    d.expected_files = {"unique.txt": lines(list(dict.fromkeys(seq)))}
    return d


def json_active_users(rng: random.Random) -> ShellDraft:
    """Select from a JSON array with jq (or Python)."""
    names = pick(rng, NAMES, 8)
    active = [i == 0 or rng.random() < 0.5 for i in range(len(names))]  # at least one active user
    users = [{"name": n, "active": a, "age": rng.randint(18, 80)} for n, a in zip(names, active, strict=True)]
    d = ShellDraft(
        category="text", files={"users.json": json.dumps(users, indent=2) + "\n"},
        instruction="Write active.txt with the names of the active users in users.json, sorted A-Z, one per line.",
    )
    d.bash("jq -r '.[] | select(.active) | .name' users.json | LC_ALL=C sort > active.txt")
    d.expected_files = {"active.txt": lines(sorted(n for n, a in zip(names, active, strict=True) if a))}
    return d


def most_common_word(rng: random.Random) -> ShellDraft:
    """The most frequent word of a text (a unique winner)."""
    vocab = pick(rng, WORDS, 8)
    words = [rng.choice(vocab) for _ in range(rng.randint(60, 120))]
    winner = rng.choice(vocab)
    words += [winner] * (max(Counter(words).values()) - words.count(winner) + 1)
    rng.shuffle(words)
    text = lines([" ".join(words[i : i + 10]) for i in range(0, len(words), 10)])
    count = words.count(winner)
    d = ShellDraft(category="text", files={"essay.txt": text}, instruction="Which word occurs most often in essay.txt, and how many times?")
    d.bash("tr -s ' ' '\\n' < essay.txt | sort | uniq -c | sort -rn | head -n 3")
    d.outputs = [winner, str(count)]
    d.answer = f"'{winner}' occurs {count} times."
    return d


FAMILIES = {
    f.__name__: f
    for f in (
        count_lines, largest_file, count_source_files, file_checksum, total_size,
        log_error_count, log_extract_errors, log_top_ip, log_server_errors, first_failed_login,
        csv_sum, csv_filter, csv_sort, unique_cities, dedupe_keep_order, json_active_users, most_common_word,
    )
}
