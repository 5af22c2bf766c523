"""Topic tags: the technologies, frameworks and libraries an interaction is about (``vue3``, ``pandas``).

Two sources, both lexical and cheap (they run on every analysed interaction):

- a curated alias table that normalises the many spellings of a name to one tag
  ("Vue 3", "vue3", "Vue.js 3", "vue@3" -> ``vue3``);
- identifiers the table does not know, when they are likely library names: modules imported in the
  question's code (``import polars``, ``from 'zod'``), packages being installed (``pip install
  httpx``), and CamelCase product names in the prose ("LangChain"). Python standard-library imports
  give ``python`` instead of ``os`` or ``json``.

The semantic category (coding, debugging, ...) is not decided here but in ``genesys.tools.tagging``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from functools import lru_cache

# Topics are scanned in the head of the question only: enough to see what it is about, and bounded
# work on a hostile multi-megabyte message.
SCAN_CHARS = 4_000
MAX_TOPICS = 6
# At most this many topics per interaction come from identifiers the alias table does not know.
MAX_UNKNOWN_TOPICS = 2

# canonical tag -> spellings. A space in a spelling matches a space, "-", "_" or nothing, so "vue 3"
# also covers "vue3" and "vue-3". Spellings that are ordinary English words ("node", "go",
# "express", "spring", "requests") are listed only in unambiguous forms.
TOPIC_ALIASES: dict[str, tuple[str, ...]] = {
    # languages
    "python": ("python", "python 3", "py3", "cpython", "pip install", "pypi"),
    "javascript": ("javascript", "js", "ecmascript", "es6", "es2015", "vanilla js"),
    "typescript": ("typescript", "tsconfig", "tsc"),
    "java": ("java", "jvm", "jdk"),
    "kotlin": ("kotlin",),
    "go": ("golang", "goroutine", "goroutines", "go mod", "go module", "go modules", "go.mod"),
    "rust": ("rust", "rustc", "cargo.toml", "rust lang"),
    "cpp": ("c++", "cpp", "cplusplus", "c++17", "c++20"),
    "csharp": ("c#", "csharp", "c sharp"),
    "dotnet": (".net", "dotnet", "asp.net", ".net core"),
    "php": ("php",),
    "ruby": ("ruby",),
    "swift": ("swift", "swiftui"),
    "dart": ("dart",),
    "scala": ("scala",),
    "elixir": ("elixir",),
    "sql": ("sql", "t-sql", "tsql", "pl/sql", "plpgsql"),
    "bash": ("bash", "shell script", "zsh"),
    "powershell": ("powershell",),
    "html": ("html", "html5"),
    "css": ("css", "css3", "scss", "sass", "flexbox", "css grid"),
    "regex": ("regex", "regexp", "regular expression", "regular expressions"),
    # web frameworks
    "vue3": (
        "vue 3",
        "vue.js 3",
        "vuejs 3",
        "vue@3",
        "vue v3",
        "vue 3.x",
        "composition api",
        "script setup",
        "defineprops",
        "defineemits",
    ),
    "vue2": ("vue 2", "vue.js 2", "vuejs 2", "vue@2", "vue v2", "vue 2.x"),
    "vue": ("vue", "vue.js", "vuejs"),
    "nuxt": ("nuxt", "nuxt.js", "nuxtjs", "nuxt 3"),
    "react": ("react", "react.js", "reactjs", "react-dom", "jsx", "react hooks", "usestate", "useeffect"),
    "react-native": ("react native", "react-native"),
    "nextjs": ("next.js", "nextjs", "next js"),
    "angular": ("angular",),
    "angularjs": ("angularjs", "angular.js"),
    "svelte": ("svelte", "sveltekit"),
    "tailwind": ("tailwind", "tailwindcss"),
    "node": ("node.js", "nodejs", "node js"),
    "express": ("express.js", "expressjs", "express app", "express server", "express router"),
    "django": ("django", "django rest framework", "drf"),
    "flask": ("flask",),
    "fastapi": ("fastapi", "fast api"),
    "spring": ("spring boot", "springboot", "spring framework", "spring mvc"),
    "rails": ("rails", "ruby on rails"),
    "laravel": ("laravel",),
    "graphql": ("graphql",),
    # python libraries
    "pandas": ("pandas",),
    "numpy": ("numpy",),
    "polars": ("polars",),
    "pytorch": ("pytorch", "torch"),
    "tensorflow": ("tensorflow", "keras", "tf.keras"),
    "sklearn": ("sklearn", "scikit-learn", "scikit learn"),
    "sqlalchemy": ("sqlalchemy",),
    "pydantic": ("pydantic",),
    "asyncio": ("asyncio", "async/await"),
    "celery": ("celery",),
    "airflow": ("airflow",),
    "spark": ("spark", "pyspark", "apache spark"),
    "huggingface": ("hugging face", "huggingface"),
    "langchain": ("langchain",),
    # testing
    "pytest": ("pytest", "pytest fixture", "conftest"),
    "jest": ("jest",),
    "vitest": ("vitest",),
    "playwright": ("playwright",),
    "selenium": ("selenium",),
    # data stores
    "postgresql": ("postgresql", "postgres", "psql"),
    "mysql": ("mysql", "mariadb"),
    "sqlite": ("sqlite", "sqlite3"),
    "mongodb": ("mongodb", "mongo", "mongoose"),
    "redis": ("redis",),
    "kafka": ("kafka",),
    "elasticsearch": ("elasticsearch", "elastic search"),
    # tooling and infrastructure
    "docker": ("docker", "dockerfile", "docker compose", "docker-compose", "dockerized"),
    "kubernetes": ("kubernetes", "k8s", "kubectl", "helm chart"),
    "terraform": ("terraform",),
    "ansible": ("ansible",),
    "aws": ("aws", "amazon web services", "boto3", "aws lambda"),
    "gcp": ("gcp", "google cloud"),
    "azure": ("azure",),
    "nginx": ("nginx",),
    "git": ("git", "git rebase", "git merge"),
    "github-actions": ("github actions", "github workflow"),
    "linux": ("linux", "ubuntu", "debian", "systemd"),
    "webpack": ("webpack",),
    "vite": ("vite",),
}

# Spellings that are also words, when followed by this, are the word: "how do I react to a change".
_WORD_USE: dict[str, re.Pattern[str]] = {"react": re.compile(r"\s+(?:to|against)\b(?!-)")}
# A specific tag makes its generic parent redundant: "Vue 3 ... vue" is about vue3, not vue in general.
SUBSUMES: dict[str, str] = {"vue3": "vue", "vue2": "vue", "angularjs": "angular", "react-native": "react"}
# Tags that imply another one (a PostgreSQL question is an SQL question).
IMPLIES: dict[str, tuple[str, ...]] = {
    "postgresql": ("sql",),
    "mysql": ("sql",),
    "sqlite": ("sql",),
    "nextjs": ("react",),
    "nuxt": ("vue",),
}

_CODE_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_PY_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+([A-Za-z_][\w.]*)[ \t]+import\b"
    r"|import[ \t]+([A-Za-z_][\w.]*(?:[ \t]*,[ \t]*[A-Za-z_][\w.]*)*))",
    re.MULTILINE,
)
_JS_IMPORT = re.compile(r"""(?:\bfrom|\brequire\(|\bimport\(?)\s*['"]([^'"\n]{1,100})['"]""")
# Install commands are read in code only (fenced blocks, inline code, "$ " and notebook "!" lines), so
# that prose such as "pip install it and then run" does not read "it", "and" as packages.
_INSTALL = re.compile(
    r"^[ \t]*[$!]?[ \t]*"
    r"(?:pip3?[ \t]+install|poetry[ \t]+add|uv[ \t]+(?:pip[ \t]+install|add)|npm[ \t]+(?:install|i)"
    r"|yarn[ \t]+add|pnpm[ \t]+add|cargo[ \t]+add)"
    r"((?:[ \t]+[-@\w./=<>~^\[\]]+){1,6})",
    re.IGNORECASE | re.MULTILINE,
)
_SHELL_LINE = re.compile(r"^[ \t]*[$!][^\n]*", re.MULTILINE)
_ASSET = re.compile(r"\.(?:css|scss|sass|less|json|png|svg|jpe?g|gif|vue|tsx?|jsx|html|md|wasm|txt)$")
_NODE_BUILTINS = frozenset(
    {"fs", "path", "http", "https", "os", "crypto", "events", "child_process", "util", "url", "stream"}
)
_CAMEL = re.compile(r"(?<![\w.])([A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+)(?![\w(.])")
# CamelCase words ending like this are the user's own classes or error names, not technologies.
_NOT_A_PRODUCT = re.compile(
    r"(?:Error|Exception|Warning|Service|Controller|Component|Manager|Handler|Factory|Provider|"
    r"Repository|Model|View|Class|Helper|Utils?|Config|Test|Tests|Interface|Props|State|Context|"
    r"Request|Response|Client|Server|Button|List|Form|Page|Store|Item|Type|Event|Data|Id|Name)$"
)
_PACKAGE_NAME = re.compile(r"^@?[a-z0-9][a-z0-9._/-]{0,60}$")


def _spelling_pattern(spelling: str) -> str:
    return r"[\s_-]?".join(re.escape(part) for part in spelling.split(" "))


@lru_cache(maxsize=1)
def _alias_matcher() -> tuple[re.Pattern[str], dict[str, str]]:
    """One regex over every spelling (longest first, so "vue.js 3" wins over "vue"), and its lookup."""
    lookup: dict[str, str] = {}
    for tag, spellings in TOPIC_ALIASES.items():
        for spelling in spellings:
            lookup[_canonical_spelling(spelling)] = tag
    ordered = sorted({s for spellings in TOPIC_ALIASES.values() for s in spellings}, key=len, reverse=True)
    body = "|".join(_spelling_pattern(s) for s in ordered)
    # No word character (nor "+", "#", which continue "c++" / "c#") on either side.
    return re.compile(rf"(?<![\w+#])(?:{body})(?![\w+#])"), lookup


def _canonical_spelling(text: str) -> str:
    return re.sub(r"[\s_-]+", "", text.lower())


def alias_topic(name: str) -> str | None:
    """The canonical tag of a name ("Vue.js 3" -> "vue3"), or None when the table does not know it."""
    _, lookup = _alias_matcher()
    return lookup.get(_canonical_spelling(name))


def normalize_topic(name: str) -> str:
    """A tag for any name: the alias table's, else lowercase with runs of other characters as "-"."""
    known = alias_topic(name)
    if known:
        return known
    tag = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return re.sub(r"-js$", "js", tag)  # chart.js -> chartjs, as the table writes nextjs


def _stdlib_modules() -> frozenset[str]:
    return frozenset(sys.stdlib_module_names)


def _package_topic(raw: str, *, python: bool) -> str | None:
    """The tag of an imported or installed package name, or None when it is not a package.

    ``python``: a Python module path (``a.b.c``, standard library -> ``python``); otherwise an npm,
    PyPI or crates name (``chart.js``, ``lodash/fp``, ``@vue/test-utils``, ``fastapi[all]==0.115``).
    """
    raw = re.split(r"[=<>~^\[]", raw.strip(), maxsplit=1)[0]  # version pins and extras
    if raw.startswith("node:"):
        return "node"
    if (
        not raw
        or raw.startswith((".", "/", "-", "~"))
        or _ASSET.search(raw)
        or not _PACKAGE_NAME.match(raw.lower())
    ):
        return None
    if python:
        root = raw.split(".", 1)[0]
        if root in _stdlib_modules():
            return "python"
    elif raw.startswith("@"):  # a scoped npm package: "@vue/test-utils" is about vue
        scope, _, rest = raw[1:].partition("/")
        return alias_topic(scope) or normalize_topic(f"{scope}-{rest}" if rest else scope)
    else:
        root = raw.split("/", 1)[0]
        if root in _NODE_BUILTINS:
            return "node"
    return alias_topic(raw) or alias_topic(root) or (normalize_topic(root) if len(root) >= 2 else None)


def _imported_packages(text: str) -> Iterable[tuple[str, bool]]:
    """(name, is a Python module path) of every package the text imports or installs."""
    for match in _PY_IMPORT.finditer(text):
        if match.group(1):
            yield match.group(1), True
        else:
            yield from ((name.strip(), True) for name in match.group(2).split(","))
    for match in _JS_IMPORT.finditer(text):
        yield match.group(1), False
    code = [m.group(0).strip("`") for m in (*_CODE_FENCE.finditer(text), *_INLINE_CODE.finditer(text))]
    code.extend(m.group(0) for m in _SHELL_LINE.finditer(text))
    for part in code:
        for match in _INSTALL.finditer(part):
            yield from ((word, False) for word in match.group(1).split() if not word.startswith("-"))


def _prose(text: str) -> str:
    return _INLINE_CODE.sub(" ", _CODE_FENCE.sub(" ", text))


def extract_topics(text: str, *, max_topics: int = MAX_TOPICS) -> list[str]:
    """Topic tags of a question, in order of appearance: known names first, then likely packages.

    Only the first ``SCAN_CHARS`` characters are read.
    """
    head = text[:SCAN_CHARS]
    pattern, lookup = _alias_matcher()
    found: list[str] = []
    lowered = head.lower()
    for match in pattern.finditer(lowered):
        spelling = _canonical_spelling(match.group(0))
        word_use = _WORD_USE.get(spelling)
        if word_use is not None and word_use.match(lowered, match.end()):
            continue
        tag = lookup[spelling]
        if tag not in found:
            found.append(tag)
    unknown: list[str] = []
    candidates = [_package_topic(name, python=python) for name, python in _imported_packages(head)]
    for match in _CAMEL.finditer(_prose(head)):
        word = match.group(1)
        candidates.append(
            alias_topic(word) or (None if _NOT_A_PRODUCT.search(word) else normalize_topic(word))
        )
    for candidate in candidates:
        if candidate and candidate not in found and candidate not in unknown:
            (found if candidate in TOPIC_ALIASES else unknown).append(candidate)
    for tag in list(found):
        for implied in IMPLIES.get(tag, ()):
            if implied not in found:
                found.append(implied)
    topics = [t for t in found if not any(SUBSUMES.get(other) == t for other in found)]
    topics.extend(unknown[:MAX_UNKNOWN_TOPICS])
    return topics[:max_topics]
