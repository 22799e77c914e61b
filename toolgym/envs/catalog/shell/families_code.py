"""Shell task families about code: make a project's tests pass, and git operations in a local repo."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from toolgym.envs.catalog.shell.draft import GIT_INIT, NAMES, UNITTEST, WORDS, ShellDraft, pick, python_probe, quote

# ---------------------------------------------------------------------- make the tests pass

# (buggy body, fixed body, sed expression, test body); {f} is the function name.
_BUGS = (
    (
        "def {f}(xs):\n    s = 0\n    for i in range(len(xs) - 1):\n        s += xs[i]\n    return s\n",
        "range(len(xs) - 1)", "range(len(xs))",
        "    def test_sum(self):\n        self.assertEqual({f}([{a}, {b}, {c}]), {a} + {b} + {c})\n\n"
        "    def test_empty(self):\n        self.assertEqual({f}([]), 0)\n",
    ),
    (
        "def {f}(age):\n    return age > {a}\n",
        "age > {a}", "age >= {a}",
        "    def test_boundary(self):\n        self.assertTrue({f}({a}))\n\n"
        "    def test_below(self):\n        self.assertFalse({f}({a} - 1))\n",
    ),
    (
        "def {f}(xs):\n    return sum(xs) // len(xs)\n",
        "sum(xs) // len(xs)", "sum(xs) / len(xs)",
        "    def test_mean(self):\n        self.assertAlmostEqual({f}([{a}, {b}]), ({a} + {b}) / 2)\n\n"
        "    def test_single(self):\n        self.assertEqual({f}([{c}]), {c})\n",
    ),
    (
        "def {f}(x, lo, hi):\n    return max(lo, min(x, lo))\n",
        "min(x, lo)", "min(x, hi)",
        "    def test_inside(self):\n        self.assertEqual({f}({b}, 0, 1000), {b})\n\n"
        "    def test_above(self):\n        self.assertEqual({f}(2000, 0, 1000), 1000)\n",
    ),
)


# Hidden inputs per bug above (same order): lists of argument lists.
_BUG_PROBES: tuple[Callable[[random.Random], list[list[Any]]], ...] = (
    lambda r: [[[r.randint(-50, 50) for _ in range(r.randint(1, 6))]] for _ in range(3)],
    lambda r: [[r.randint(0, 120)] for _ in range(4)],
    lambda r: [[[r.randint(1, 99) for _ in range(r.choice((2, 4)))]] for _ in range(3)],
    lambda r: [[r.randint(-500, 1500), 0, r.choice((100, 1000))] for _ in range(4)],
)


def _expected(code: str, function: str, calls: list[list[Any]]) -> Any:
    """What the correct code returns for ``calls`` (the catalog's own implementation, run here)."""
    space: dict[str, Any] = {}
    exec(compile(code, "<catalog>", "exec"), space)  # our own fixed code, never the model's
    return [space[function](*args) for args in calls]


def _unittest_file(module: str, body: str) -> str:
    return f"import unittest\n\nfrom {module} import *\n\n\nclass Test{module.capitalize()}(unittest.TestCase):\n{body}\n\nif __name__ == '__main__':\n    unittest.main()\n"


def fix_python_bug(rng: random.Random) -> ShellDraft:
    """A one-line bug in a small module; its unittest suite shows it."""
    code, wrong, right, tests = rng.choice(_BUGS)
    module, f = rng.choice(WORDS), rng.choice(("compute", "check", "measure", "apply"))
    a, b, c = (rng.randint(2, 60) for _ in range(3))
    fill = {"f": f, "a": a, "b": b, "c": c}
    test_file = _unittest_file(module, tests.format(**fill))
    files = {f"app/{module}.py": code.format(**fill), f"app/test_{module}.py": test_file}
    d = ShellDraft(
        category="tests", files=files,
        instruction=f"The tests in app/ fail (run them with: cd app && python3 -m unittest). Fix the bug in app/{module}.py so they pass; do not edit the tests.",
    )
    d.bash("cd app && python3 -m unittest 2>&1 | grep -v '^Ran ' | tail -n 5")
    d.bash(f"sed -i 's|{wrong.format(**fill)}|{right.format(**fill)}|' {module}.py && python3 -m unittest 2>&1 | grep -v '^Ran ' | tail -n 3")
    d.check = f"cd app && {UNITTEST} 2>&1"
    d.expected_files = {f"app/test_{module}.py": test_file}
    calls = _BUG_PROBES[_BUGS.index((code, wrong, right, tests))](rng)
    fixed = code.format(**fill).replace(wrong.format(**fill), right.format(**fill))
    d.probe = (f"cd app && {python_probe(module, f, calls)}", _expected(fixed, f, calls))
    return d


# name, stub signature, implementation, tests; all with {f}.
_IMPLEMENT = (
    (
        "def {f}(text):\n    \"\"\"Lowercase, words joined by single hyphens, only a-z0-9 kept.\"\"\"\n    raise NotImplementedError\n",
        "import re\n\n\ndef {f}(text):\n    words = re.findall(r'[a-z0-9]+', text.lower())\n    return '-'.join(words)\n",
        "    def test_basic(self):\n        self.assertEqual({f}('Hello, World!'), 'hello-world')\n\n"
        "    def test_spaces(self):\n        self.assertEqual({f}('  {w} 42  times '), '{w}-42-times')\n",
    ),
    (
        "def {f}(text):\n    \"\"\"Number of vowels (a, e, i, o, u; either case) in text.\"\"\"\n    raise NotImplementedError\n",
        "def {f}(text):\n    return sum(ch in 'aeiou' for ch in text.lower())\n",
        "    def test_word(self):\n        self.assertEqual({f}('{w}'), {vowels})\n\n"
        "    def test_upper(self):\n        self.assertEqual({f}('AEIOUxyz'), 5)\n",
    ),
    (
        "def {f}(text):\n    \"\"\"The words of text in reverse order, separated by single spaces.\"\"\"\n    raise NotImplementedError\n",
        "def {f}(text):\n    return ' '.join(reversed(text.split()))\n",
        "    def test_three(self):\n        self.assertEqual({f}('{w} and more'), 'more and {w}')\n\n"
        "    def test_blank(self):\n        self.assertEqual({f}('   '), '')\n",
    ),
)


def implement_function(rng: random.Random) -> ShellDraft:
    """Implement a stubbed function so its tests pass."""
    stub, impl, tests = rng.choice(_IMPLEMENT)
    module, f, w = rng.choice(WORDS), rng.choice(("transform", "process", "convert")), rng.choice(WORDS)
    fill = {"f": f, "w": w, "vowels": sum(ch in "aeiou" for ch in w)}
    test_file = _unittest_file(module, tests.format(**fill))
    d = ShellDraft(
        category="tests", files={f"lib/{module}.py": stub.format(**fill), f"lib/test_{module}.py": test_file},
        instruction=f"Implement {f}() in lib/{module}.py as its docstring says, so that `cd lib && python3 -m unittest` passes. Do not edit the tests.",
    )
    d.write(f"lib/{module}.py", impl.format(**fill))
    d.bash("cd lib && python3 -m unittest 2>&1 | grep -v '^Ran ' | tail -n 3")
    d.check = f"cd lib && {UNITTEST} 2>&1"
    d.expected_files = {f"lib/test_{module}.py": test_file}
    calls = [[f"{rng.choice(WORDS).upper()}, {rng.choice(WORDS)}  {rng.randint(0, 99)}!"] for _ in range(3)]
    d.probe = (f"cd lib && {python_probe(module, f, calls)}", _expected(impl.format(**fill), f, calls))
    return d


_SCRIPTS = (
    ("words.sh", "Print the number of words in the file given as the first argument.", "#!/bin/sh\nwc -l < \"$1\"\n", "wc -l", "wc -w",
     "printf 'one two three\\nfour five\\n' > /tmp/t.txt\n[ \"$(sh words.sh /tmp/t.txt | tr -d ' ')\" = 5 ] || { echo FAIL; exit 1; }\necho PASS\n"),
    ("greet.sh", "Print 'Hello, NAME!' where NAME is the first argument.", "#!/bin/sh\necho \"Hello, $2!\"\n", "\\$2", "\\$1",
     "[ \"$(sh greet.sh {w})\" = 'Hello, {w}!' ] || {{ echo FAIL; exit 1; }}\necho PASS\n"),
)


def fix_shell_script(rng: random.Random) -> ShellDraft:
    """A shell script with a bug and a test script that shows it."""
    name, purpose, script, wrong, right, test = rng.choice(_SCRIPTS)
    test = test.format(w=rng.choice(WORDS)) if "{w}" in test else test
    d = ShellDraft(
        category="tests", files={f"tools/{name}": script, "tools/test.sh": test},
        instruction=f"tools/{name} should: {purpose} Its test (cd tools && sh test.sh) fails. Fix the script, not the test.",
    )
    d.bash("cd tools && sh test.sh")
    d.bash(f"sed -i 's/{wrong}/{right}/' {name} && sh test.sh")
    d.check = "cd tools && sh test.sh"
    d.expected_files = {"tools/test.sh": test}
    words = pick(rng, WORDS, rng.randint(3, 9))
    if name == "words.sh":  # hidden input: a file whose words the script must count
        run = f"printf %s {quote(' '.join(words[:2]) + chr(10) + ' '.join(words[2:]) + chr(10))} > /tmp/p.txt && sh words.sh /tmp/p.txt"
        want: Any = str(len(words))
    else:
        run, want = f"sh greet.sh {words[0]}", f"Hello, {words[0]}!"
    d.probe = (f"cd tools && out=$({run} | tr -d ' ') && printf '\"%s\"\\n' \"$out\"", want.replace(" ", ""))
    return d


# ---------------------------------------------------------------------- git


def _history(rng: random.Random, n: int) -> tuple[list[str], list[str]]:
    """Setup commands making ``n`` commits that each append a word to notes.txt; their subjects."""
    words = pick(rng, WORDS, n)
    subjects = [f"Add {w} to notes" for w in words]
    commands = [GIT_INIT] + [f"echo {w} >> notes.txt && git add notes.txt && git commit -q -m {quote(s)}" for w, s in zip(words, subjects, strict=True)]
    return commands, subjects


def git_commit_file(rng: random.Random) -> ShellDraft:
    """Stage and commit a new file with a given message."""
    setup, _ = _history(rng, 2)
    name = f"{rng.choice(WORDS)}.md"
    message = f"Document {rng.choice(WORDS)} {rng.choice(('setup', 'usage', 'limits'))}"
    d = ShellDraft(
        category="git", files={name: f"# {name}\n"}, setup=setup,
        instruction=f"This folder is a git repository. Commit the new file {name} with the message '{message}'. Leave the working tree clean.",
    )
    d.bash(f"git add {name} && git commit -q -m {quote(message)} && git log --oneline -n 2")
    d.check = f'[ "$(git log -1 --format=%s)" = {quote(message)} ] && [ -z "$(git status --porcelain)" ] && git ls-files --error-unmatch {name}'
    return d


def git_feature_branch(rng: random.Random) -> ShellDraft:
    """Make a branch with one commit, leaving main untouched."""
    setup, _ = _history(rng, 2)
    branch = f"feature/{rng.choice(WORDS)}"
    name = f"{rng.choice(WORDS)}.txt"
    d = ShellDraft(
        category="git", setup=setup,
        instruction=f"In this git repository, create a branch {branch} from main and, on that branch only, commit a file {name} containing the line 'draft'. main must not change.",
    )
    d.bash(f"git switch -q -c {branch} && echo draft > {name} && git add {name} && git commit -q -m 'Add {name}'")
    d.check = (
        f'[ "$(git rev-list --count main..{branch})" = 1 ] && [ "$(git show {branch}:{name})" = draft ] '
        f"&& ! git cat-file -e main:{name} 2>/dev/null && [ \"$(git rev-list --count main)\" = 2 ]"
    )
    return d


def git_restore_file(rng: random.Random) -> ShellDraft:
    """Throw away uncommitted edits of one file, keep the others."""
    setup, _ = _history(rng, 3)
    keep = f"{rng.choice(NAMES)}.txt"
    setup += [f"echo draft > {keep} && git add {keep} && git commit -q -m 'Add {keep}'", f"echo 'scratch' >> notes.txt && echo more >> {keep}"]
    d = ShellDraft(
        category="git", setup=setup,
        instruction=f"I messed up notes.txt. Restore it to its last committed version, but keep my uncommitted changes to {keep}.",
    )
    d.bash("git restore notes.txt && git status --short")
    d.check = f"git diff --quiet -- notes.txt && ! git diff --quiet -- {keep}"
    d.expected_files = {keep: "draft\nmore\n"}
    return d


def git_find_commit(rng: random.Random) -> ShellDraft:
    """Which commit introduced a word (``git log -S``)."""
    setup, subjects = _history(rng, 5)
    i = rng.randrange(5)
    word = subjects[i].split()[1]
    d = ShellDraft(category="git", setup=setup, instruction=f"Which commit added the word '{word}' to notes.txt? Give its commit message.")
    d.bash(f"git log -S {word} --format='%h %s' -- notes.txt")
    d.outputs = [subjects[i]]
    d.answer = f"It was added by '{subjects[i]}'."
    return d


def git_tag_commit(rng: random.Random) -> ShellDraft:
    """Tag an older commit found by its message."""
    setup, subjects = _history(rng, 4)
    i = rng.randrange(3)
    tag = f"v1.{rng.randint(0, 9)}.0"
    d = ShellDraft(category="git", setup=setup, instruction=f"Create the tag {tag} on the commit whose message is '{subjects[i]}' (not on the latest commit).")
    d.bash(f"git tag {tag} $(git log --format=%H --grep={quote('^' + subjects[i] + '$')})")
    d.check = f'[ "$(git rev-parse {tag}^{{commit}})" = "$(git log --format=%H --grep={quote("^" + subjects[i] + "$")})" ]'
    return d


def git_unstage(rng: random.Random) -> ShellDraft:
    """Unstage a file without losing its edits."""
    setup, _ = _history(rng, 2)
    secret = f"{rng.choice(WORDS)}.env"
    setup += [f"echo 'TOKEN={rng.randint(10**5, 10**6)}' > {secret} && echo extra >> notes.txt && git add -A"]
    d = ShellDraft(
        category="git", setup=setup,
        instruction=f"I staged {secret} by mistake together with notes.txt. Unstage {secret} only (keep the file on disk, untracked); notes.txt stays staged.",
    )
    d.bash(f"git restore --staged {secret} && git status --short")
    d.check = f"[ -f {secret} ] && ! git ls-files --error-unmatch {secret} 2>/dev/null && ! git diff --cached --quiet -- notes.txt"
    return d


FAMILIES = {
    f.__name__: f
    for f in (fix_python_bug, implement_function, fix_shell_script, git_commit_file, git_feature_branch, git_restore_file, git_find_commit, git_tag_commit, git_unstage)
}
