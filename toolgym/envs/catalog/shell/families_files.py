"""Shell task families about files: layout and contents, permissions, archives."""

from __future__ import annotations

import random

from toolgym.envs.catalog.shell.draft import CITIES, NAMES, WORDS, ShellDraft, lines, pick, quote

# Deterministic archives: same files, same bytes (no times, owners or gzip name/date).
TAR_FLAGS = "--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner"

# ---------------------------------------------------------------------- files


def project_skeleton(rng: random.Random) -> ShellDraft:
    """Create a small project layout with given file contents."""
    pkg = rng.choice(WORDS)
    title = pkg.capitalize() + " " + rng.choice(("Tools", "Service", "Library", "Toolkit"))
    version = f"{rng.randint(0, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}"
    d = ShellDraft(
        category="files",
        instruction=(
            f"Set up a Python project skeleton in the workspace: an empty file src/{pkg}/__init__.py, "
            f"a file src/{pkg}/VERSION containing just the line {version}, a tests/ directory with an empty "
            f"tests/test_{pkg}.py, and a README.md whose only line is '# {title}'."
        ),
    )
    d.bash(
        f"mkdir -p src/{pkg} tests && touch src/{pkg}/__init__.py tests/test_{pkg}.py && "
        f"echo {version} > src/{pkg}/VERSION && echo {quote('# ' + title)} > README.md"
    )
    d.expected_files = {
        f"src/{pkg}/__init__.py": "", f"src/{pkg}/VERSION": f"{version}\n", f"tests/test_{pkg}.py": "", "README.md": f"# {title}\n",
    }
    return d


def rename_extension(rng: random.Random) -> ShellDraft:
    """Rename every file with one extension in a folder to another extension."""
    old, new = rng.choice((("txt", "md"), ("jpeg", "jpg"), ("htm", "html"), ("yml", "yaml")))
    stems = pick(rng, WORDS, rng.randint(3, 5))
    keep = rng.choice([w for w in WORDS if w not in stems])
    files = {f"notes/{s}.{old}": f"{s} notes\n" for s in stems}
    files[f"notes/{keep}.cfg"] = "mode=keep\n"
    d = ShellDraft(category="files", files=files, instruction=f"In the notes/ folder, rename every .{old} file to .{new} (same name otherwise). Leave other files alone.")
    d.bash(f'cd notes && for f in *.{old}; do mv -- "$f" "${{f%.{old}}}.{new}"; done')
    d.expected_files = {f"notes/{s}.{old}": None for s in stems}
    d.expected_files |= {f"notes/{s}.{new}": f"{s} notes\n" for s in stems}
    d.expected_files[f"notes/{keep}.cfg"] = "mode=keep\n"
    return d


def sort_by_extension(rng: random.Random) -> ShellDraft:
    """Move the files of a folder into one subfolder per extension."""
    exts = pick(rng, ("pdf", "png", "csv", "txt", "log"), 3)
    files = {f"inbox/{w}.{rng.choice(exts)}": f"content of {w}\n" for w in pick(rng, WORDS, 7)}
    d = ShellDraft(
        category="files", files=files,
        instruction="Tidy inbox/: move every file into a subfolder of inbox/ named after its extension (inbox/report.pdf goes to inbox/pdf/report.pdf).",
    )
    d.bash('cd inbox && for f in *.*; do [ -f "$f" ] || continue; e="${f##*.}"; mkdir -p "$e" && mv -- "$f" "$e/"; done')
    d.expected_files = {path: None for path in files}
    for path, content in files.items():
        name = path.split("/")[1]
        d.expected_files[f"inbox/{name.rsplit('.', 1)[1]}/{name}"] = content
    return d


def clean_temp_files(rng: random.Random) -> ShellDraft:
    """Delete editor and temp leftovers everywhere in a tree, keeping real files."""
    files, junk = {}, []
    for i, word in enumerate(pick(rng, WORDS, 5)):
        folder = rng.choice(("project", "project/src", "project/docs", "project/src/lib"))
        files[f"{folder}/{word}.py"] = f"# {word}\n"
        if i % 2 == 0 or rng.random() < 0.5:
            leftover = f"{folder}/{word}" + rng.choice((".py~", ".tmp", ".bak", ".py.swp"))
            files[leftover] = "junk\n"
            junk.append(leftover)
    d = ShellDraft(
        category="files", files=files,
        instruction="Under project/, delete every leftover file ending in ~, .tmp, .bak or .swp, in all subfolders. Keep everything else.",
    )
    d.bash(r"find project -type f \( -name '*~' -o -name '*.tmp' -o -name '*.bak' -o -name '*.swp' \) -delete")
    d.expected_files = {p: (None if p in junk else c) for p, c in files.items()}
    return d


def replace_word(rng: random.Random) -> ShellDraft:
    """Replace a product name in every .txt file of a folder, not elsewhere."""
    old, new = pick(rng, WORDS, 2)
    old, new = old.capitalize() + "DB", new.capitalize() + "DB"
    files = {}
    for w in pick(rng, [x for x in WORDS if x.capitalize() + "DB" not in (old, new)], 4):
        files[f"docs/{w}.txt"] = f"{old} setup for {w}.\nUse {old} {rng.randint(2, 9)}.x with {w}.\n"
    files["docs/CHANGELOG.md"] = f"- moved to {old}\n"
    d = ShellDraft(
        category="files", files=files,
        instruction=f"Our product was renamed from {old} to {new}. Replace every occurrence of {old} with {new} in the .txt files of docs/ (not in other files).",
    )
    d.bash(f"sed -i 's/{old}/{new}/g' docs/*.txt")
    d.expected_files = {p: (c.replace(old, new) if p.endswith(".txt") else c) for p, c in files.items()}
    return d


def set_config_value(rng: random.Random) -> ShellDraft:
    """Change one key in one section of an INI file where the same key exists in another section."""
    port, other, new = rng.sample(range(1024, 9999), 3)
    host = rng.choice(CITIES).lower()
    text = f"[database]\nhost = db.{host}.internal\nport = {other}\n\n[server]\nhost = 0.0.0.0\nport = {port}\nworkers = {rng.randint(2, 8)}\n"
    d = ShellDraft(
        category="files", files={"config.ini": text},
        instruction=f"In config.ini, change the port of the [server] section to {new}. The [database] port must stay {other}.",
    )
    d.bash(rf"sed -i '/^\[server\]/,/^\[/ s/^port = .*/port = {new}/' config.ini")
    d.expected_files = {"config.ini": text.replace(f"port = {port}", f"port = {new}")}
    return d


def concat_parts(rng: random.Random) -> ShellDraft:
    """Join numbered parts in numeric order (part10 after part9, not after part1)."""
    n = rng.randint(10, 13)
    words = [rng.choice(WORDS) for _ in range(n)]
    files = {f"parts/part{i}.txt": f"{i}: {words[i - 1]}\n" for i in range(1, n + 1)}
    d = ShellDraft(
        category="files", files=files,
        instruction=f"Concatenate parts/part1.txt to parts/part{n}.txt in numeric order into full.txt in the workspace.",
    )
    d.bash("cat $(ls parts/part*.txt | sort -V) > full.txt")
    d.expected_files = {"full.txt": "".join(files[f"parts/part{i}.txt"] for i in range(1, n + 1))}
    return d


def release_symlink(rng: random.Random) -> ShellDraft:
    """Point a ``current`` symlink at the newest release directory."""
    versions = sorted({(1, rng.randint(0, 12), rng.randint(0, 12)) for _ in range(4)})
    names = [f"v{a}.{b}.{c}" for a, b, c in versions]
    files = {f"releases/{v}/VERSION": f"{v}\n" for v in names}
    newest = names[-1]
    d = ShellDraft(
        category="files", files=files, setup=[f"ln -s releases/{names[0]} current"],
        instruction="Make the symlink 'current' in the workspace point to the newest release under releases/ (highest version number), as a relative link.",
    )
    d.bash(f"ln -sfn releases/{newest} current")
    d.expected_files = {"current/VERSION": f"{newest}\n"}
    d.check = f'[ -L current ] && [ "$(readlink current)" = "releases/{newest}" ]'
    return d


# ---------------------------------------------------------------------- permissions


def make_scripts_executable(rng: random.Random) -> ShellDraft:
    """Make the shell scripts of a folder executable, and nothing else."""
    scripts = pick(rng, WORDS, 3)
    others = pick(rng, [w for w in WORDS if w not in scripts], 2)
    files = {f"bin/{s}.sh": f"#!/bin/sh\necho {s}\n" for s in scripts} | {f"bin/{o}.txt": f"{o}\n" for o in others}
    d = ShellDraft(category="permissions", files=files, instruction="Make every .sh file in bin/ executable (by everyone). The other files must not become executable.")
    d.bash("chmod a+x bin/*.sh")
    d.check = " && ".join([f"[ -x bin/{s}.sh ] && [ $(stat -c %a bin/{s}.sh) = 755 ]" for s in scripts] + [f"[ ! -x bin/{o}.txt ]" for o in others])
    d.expected_files = {f"bin/{s}.sh": f"#!/bin/sh\necho {s}\n" for s in scripts}
    return d


def private_keys(rng: random.Random) -> ShellDraft:
    """Lock down a secrets folder: the folder 700, the key files 600."""
    keys = pick(rng, NAMES, rng.randint(2, 4))
    files = {f"secrets/{k}.key": f"KEY-{k.upper()}-{rng.randint(1000, 9999)}\n" for k in keys}
    files["secrets/README"] = "keys live here\n"
    d = ShellDraft(
        category="permissions", files=files, setup=["chmod 755 secrets && chmod 644 secrets/*"],
        instruction="Lock down secrets/: the folder itself must be mode 700 and every .key file in it mode 600. Leave README as it is (644).",
    )
    d.bash("chmod 600 secrets/*.key && chmod 700 secrets")
    d.check = " && ".join(["[ $(stat -c %a secrets) = 700 ]", "[ $(stat -c %a secrets/README) = 644 ]"] + [f"[ $(stat -c %a secrets/{k}.key) = 600 ]" for k in keys])
    return d


def fix_world_writable(rng: random.Random) -> ShellDraft:
    """Find the world-writable files, name them, and make them 644."""
    names = pick(rng, WORDS, 5)
    bad = sorted(rng.sample(names, rng.randint(1, 3)))
    files = {f"site/{n}.html": f"<h1>{n}</h1>\n" for n in names}
    d = ShellDraft(
        category="permissions", files=files, setup=[f"chmod 666 {' '.join(f'site/{b}.html' for b in bad)}"],
        instruction="Some files under site/ are world-writable. Tell me which ones, and change each of them to mode 644.",
    )
    d.bash("find site -type f -perm -o+w")
    d.bash("find site -type f -perm -o+w -exec chmod 644 {} +")
    d.outputs = [f"{b}.html" for b in bad]
    d.answer = "World-writable (now 644): " + ", ".join(d.outputs)
    d.check = "[ -z \"$(find site -perm -o+w)\" ] && " + " && ".join(f"[ $(stat -c %a site/{n}.html) = 644 ]" for n in names)
    return d


# ---------------------------------------------------------------------- archives


def _archive_files(rng: random.Random, root: str) -> dict[str, str]:
    return {f"{root}/{w}.txt": f"{w} {rng.randint(100, 999)}\n" for w in pick(rng, WORDS, rng.randint(3, 5))}


def extract_tarball(rng: random.Random) -> ShellDraft:
    """Unpack a .tar.gz into a given folder."""
    inner = _archive_files(rng, "data")
    d = ShellDraft(
        category="archives", files=inner,
        setup=[f"tar {TAR_FLAGS} -cf - data | gzip -n > dataset.tar.gz && rm -r data"],
        instruction="Extract dataset.tar.gz into a new folder named restored/ (so its data/ folder ends up at restored/data/).",
    )
    d.bash("mkdir -p restored && tar -xzf dataset.tar.gz -C restored")
    d.expected_files = {f"restored/{p}": c for p, c in inner.items()} | {p: None for p in inner}
    return d


def create_backup(rng: random.Random) -> ShellDraft:
    """Create a gzip tarball of one folder, leaving another out."""
    docs = _archive_files(rng, "docs")
    files = docs | {"build/out.bin": "binary\n"}
    listing = lines(sorted(docs))
    d = ShellDraft(
        category="archives", files=files,
        instruction="Create backup.tar.gz in the workspace holding the docs/ folder (paths inside the archive start with docs/). Do not include build/.",
    )
    d.bash("tar -czf backup.tar.gz docs")
    d.check = f"[ \"$(tar -tzf backup.tar.gz | grep -v '/$' | LC_ALL=C sort)\" = {quote(listing.rstrip())} ]"
    d.expected_files = docs
    return d


def extract_one_from_zip(rng: random.Random) -> ShellDraft:
    """Extract a single member of a zip archive."""
    inner = {f"config/{w}.json": f'{{"name": "{w}", "level": {rng.randint(1, 9)}}}\n' for w in pick(rng, WORDS, 4)}
    target = rng.choice(sorted(inner))
    d = ShellDraft(
        category="archives", files=inner,
        setup=["touch -d 2020-01-01T00:00:00 config config/* && zip -X -q -r bundle.zip config && rm -r config"],
        instruction=f"From bundle.zip, extract only {target} (keeping its path). Do not extract anything else.",
    )
    d.bash(f"unzip -q bundle.zip {target}")
    d.expected_files = {p: (c if p == target else None) for p, c in inner.items()}
    return d


def count_archive_members(rng: random.Random) -> ShellDraft:
    """How many regular files an archive holds (folders do not count)."""
    inner = _archive_files(rng, "logs/a") | _archive_files(rng, "logs/b")
    d = ShellDraft(
        category="archives", files=inner,
        setup=[f"tar {TAR_FLAGS} -cjf logs.tar.bz2 logs && rm -r logs"],
        instruction="How many regular files (not directories) are inside logs.tar.bz2? Do not extract it into the workspace.",
    )
    d.bash("tar -tjf logs.tar.bz2 | grep -vc '/$'")
    d.outputs = [str(len(inner))]
    d.answer = f"logs.tar.bz2 holds {len(inner)} files."
    d.expected_files = {p: None for p in inner}
    return d


FAMILIES = {
    f.__name__: f
    for f in (
        project_skeleton, rename_extension, sort_by_extension, clean_temp_files, replace_word, set_config_value,
        concat_parts, release_symlink, make_scripts_executable, private_keys, fix_world_writable,
        extract_tarball, create_backup, extract_one_from_zip, count_archive_members,
    )
}
