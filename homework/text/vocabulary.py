"""The unit vocabulary of the generator: every unit the data covers, in every spelling people write.

Built from pint's registry -- each unit's name, symbol and aliases, SI prefixes joined to names and
symbols, plurals, `x per y` / `x/y` compounds and `^3` / `**3` / `cubic` powers -- plus the one reviewed
table of informal forms pint lacks (INFORMAL). Case variants of symbols ("KM", "Kg") are kept only
where pint does not read them as another unit ("MG" is megagauss, "Min" megainch).

Each unit's forms are then split into a training family and a held-out family (`split_forms`): the
held-out spellings never occur in data/train.json or data/valid.json, only in data/heldout.json.

A few spellings mean different units depending on the other unit of the question ("ounce" beside a quart is
a fluid ounce): BY_KIND lists them, and `reading` resolves them.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, replace

# (dimension, pint expression). Compound units are "a / b" or "a ** 3".
UNIT_KEYS: tuple[tuple[str, str], ...] = (
    ("length", "millimeter"), ("length", "centimeter"), ("length", "meter"), ("length", "kilometer"),
    ("length", "inch"), ("length", "foot"), ("length", "yard"), ("length", "mile"),
    ("mass", "milligram"), ("mass", "gram"), ("mass", "kilogram"), ("mass", "metric_ton"),
    ("mass", "ounce"), ("mass", "pound"), ("mass", "stone"),
    ("time", "second"), ("time", "minute"), ("time", "hour"), ("time", "day"), ("time", "week"),
    ("time", "month"), ("time", "year"), ("time", "decade"), ("time", "century"),
    ("volume", "milliliter"), ("volume", "liter"), ("volume", "centimeter ** 3"), ("volume", "meter ** 3"),
    ("volume", "inch ** 3"), ("volume", "foot ** 3"), ("volume", "gallon"), ("volume", "quart"),
    ("volume", "pint"), ("volume", "cup"), ("volume", "fluid_ounce"), ("volume", "tablespoon"),
    ("volume", "teaspoon"),
    ("volume", "millimeter ** 3"), ("volume", "decimeter ** 3"), ("volume", "yard ** 3"),
    ("speed", "meter / second"), ("speed", "kilometer / hour"), ("speed", "mile / hour"),
    ("speed", "foot / second"), ("speed", "knot"), ("speed", "inch / second"), ("speed", "centimeter / second"),
    ("speed", "millimeter / second"), ("speed", "meter / minute"), ("speed", "foot / minute"),
    ("speed", "kilometer / second"),
    ("data", "bit"), ("data", "byte"), ("data", "kilobyte"), ("data", "megabyte"), ("data", "gigabyte"),
    ("data", "terabyte"),
)

# Pint's "decade" is the logarithmic unit (a factor of ten), not ten years: its factor comes from this expression.
_FACTOR_EXPRESSIONS = {"decade": "10 * year"}

# Informal forms pint does not define, reviewed one by one. Bare G / M / K / T are what people type for data
# sizes ("a 64G card"); pint reads them as gauss, molar, kelvin and tesla, none of which this vocabulary has,
# so here they are data sizes and nothing else (as is pint's own bare B, byte).
INFORMAL: dict[str, tuple[str, ...]] = {
    "inch / second": ("ips", "inches a second"),
    "foot / minute": ("fpm",),
    "centimeter ** 3": ("ccs",),
    "kilometer / hour": ("kmh", "kmph", "kms per hour", "km per hour"),
    "kilogram": ("kilos", "kilo"),
    "mile / hour": ("miles an hour",),
    "meter / second": ("metres a second",),
    "pound": ("lbs",),
    "week": ("wk", "wks"),
    "yard": ("yds",),
    "gallon": ("gals",),
    "hour": ("hrs",),
    "minute": ("mins",),
    "second": ("secs",),
    "year": ("yrs",),
    "liter": ("ltr", "ltrs"),
    "fluid_ounce": ("fl oz", "fl. oz."),
    "tablespoon": ("tbs", "Tbsp"),
    "kilobyte": ("K",),
    "megabyte": ("M", "meg", "megs"),
    "gigabyte": ("G", "gig", "gigs"),
    "terabyte": ("T", "tera"),
    "metric_ton": ("metric tonnes",),
}

# Spellings that belong to one unit but mean another beside a unit of that other's kind, reviewed one by one:
# {unit key: (kind, key of the unit whose spellings it borrows)}. "quart to ounce" is 32: an ounce beside a
# volume is a fluid ounce. The lender keeps the spellings everywhere else ("ounce" beside a gram).
BY_KIND: dict[str, tuple[str, str]] = {
    "fluid_ounce": ("volume", "ounce"),
}

# Spellings too common to hold out, reviewed one by one: the model must read them, so every training file has
# them (held out, "cc" was read as a cubic inch). The data-size letters go with B, their byte.
ALWAYS_TRAINED: dict[str, tuple[str, ...]] = {
    "centimeter ** 3": ("cc",), "byte": ("B",), "kilobyte": ("K",), "megabyte": ("M",), "gigabyte": ("G",),
    "terabyte": ("T",), "mile / hour": ("mph",), "liter": ("L",), "milliliter": ("mL",), "fluid_ounce": ("fl oz",),
}

# Aliases that are pint's identifiers rather than words people write ("international_inch", "avdp_ounce")
# start with one of these; non-ASCII aliases ("ℓ") are left out too.
_QUALIFIERS = ("international", "avoirdupois", "avdp", "US", "UK", "liquid", "julian", "knot_international")
# Pint symbols nobody writes for these units ("a" for year, "cp" for cup, "d" for day reads as a letter).
_UNUSED_SYMBOLS = {"a", "cp", "d", "t", "floz"}
# pint aliases nobody writes for these units, and case variants that read as English words ("In 5 ft ...").
_UNUSED_FORMS = {"octet", "In", "IN"}
_IRREGULAR_PLURALS = {"foot": "feet", "feet": "feet", "century": "centuries", "inch": "inches"}


@dataclass(frozen=True)
class Unit:
    key: str  # pint expression for one of this unit
    names: tuple[str, ...]  # every surface form; the plural name first
    dimension: str
    core: tuple[str, ...] = ()  # the plural name, the main symbol and ALWAYS_TRAINED: always in the training family
    canonical: str = ""  # the standard singular name ("kilometer per hour"), as the named answer format writes it
    borrowed: tuple[str, ...] = ()  # another unit's spellings that mean this one beside a unit of its kind (BY_KIND)


@functools.lru_cache(maxsize=1)
def registry():
    import pint

    return pint.UnitRegistry()


def plural(name: str) -> str:
    """English plural of a unit name; multi-word names pluralise their last word ("fluid ounces")."""
    head, _, last = name.rpartition(" ")
    if last in _IRREGULAR_PLURALS:
        word = _IRREGULAR_PLURALS[last]
    elif re.search(r"(ch|sh|s|x)$", last):
        word = last + "es"
    elif re.search(r"[^aeiou]y$", last):
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


def _is_name(form: str, symbol: str) -> bool:
    """A spelled-out name ("metric ton", "sec") rather than a symbol ("mL", "hr", "kt")."""
    return form != symbol and len(form) >= 3 and form.replace(" ", "").isalpha() and form.islower()


def _definition_forms(name: str) -> tuple[list[str], list[str]]:
    """(names, symbols) pint gives the unit `name` (prefixes included), before plurals and case."""
    ureg = registry()
    prefix, base, _ = ureg.parse_unit_name(name)[0]
    unit = ureg._units[base]
    raw = [unit.name, *unit.aliases]
    forms = [a.replace("_", " ") for a in raw
             if a.isascii() and not a.startswith(_QUALIFIERS) and a not in _UNUSED_FORMS]
    words = [w for w in forms if _is_name(w, unit.symbol) or w == unit.name.replace("_", " ")]
    symbols = [s for s in [unit.symbol, *forms] if s and s not in words and s.isascii() and "_" not in s
               and s not in _UNUSED_SYMBOLS]
    if unit.symbol and "_" in unit.symbol:  # cu_ft -> "cu ft"
        words.append(unit.symbol.replace("_", " "))
    if prefix:
        p = ureg._prefixes[prefix]
        words = [prefix + w for w in words]
        symbols = [p.symbol + s for s in symbols]
    return words, symbols


def _with_plurals(words: list[str]) -> list[str]:
    out = []
    for w in words:
        out += [w] if w.startswith("cu ") or w.endswith(("s", "feet")) else [plural(w), w]
    return out


def _case_variants(symbols: list[str], key: str) -> list[str]:
    """Upper-case and capitalised symbols that pint does not read as some other unit."""
    ureg = registry()
    target = ureg.parse_expression(key)
    out = []
    for s in symbols:
        for v in (s.upper(), s[:1].upper() + s[1:]):
            if v in symbols or v in out or v in _UNUSED_FORMS:
                continue
            try:
                same = ureg.parse_expression(v) == target
            except Exception:  # pint has no such unit: free to mean ours
                same = True
            if same:
                out.append(v)
    return out


def _simple_forms(key: str) -> tuple[list[str], str | None, str]:
    words, symbols = _definition_forms(key)
    return _with_plurals(words) + symbols + _case_variants(symbols, key), (symbols or [None])[0], words[0]


def _power_forms(base: str) -> tuple[list[str], str | None, str]:
    """`cm ** 3` as people write it: cubic centimeters, cm^3, cm**3, cm3, and pint's own (cc, cu ft)."""
    words, symbols = _definition_forms(base)
    forms = [f"cubic {w}" for w in _with_plurals(words)]
    forms += [f"{s}{power}" for s in symbols for power in ("^3", "**3", "3")]
    defined = f"cubic_{base}"
    if defined in registry()._units:
        w, s = _definition_forms(defined)
        forms += [x for x in _with_plurals(w) + s if x not in forms]
    return forms, f"{symbols[0]}^3", f"cubic {words[0]}"


def _ratio_forms(top: str, bottom: str) -> tuple[list[str], str | None, str]:
    """`km / hour` as people write it: kilometers per hour, km/h, km/hr, and pint's own (kph, mph)."""
    tw, ts = _definition_forms(top)
    bw, bs = _definition_forms(bottom)
    # pint lists "inches" as an alias of inch: it is a plural already
    words = list(dict.fromkeys(f"{w if w in _IRREGULAR_PLURALS.values() else plural(w)} per {b}"
                               for w in tw for b in bw))
    symbols = [f"{t}/{b}" for t in ts for b in bs + [w for w in bw if len(w) <= 3]]  # m/s, m/sec
    forms = words + symbols
    for unit in registry()._units.values():
        if str(unit.reference) == f"{top} / {bottom}" and unit.symbol:
            forms += [unit.symbol, *[a for a in unit.aliases if a.isascii()]]
    return list(dict.fromkeys(forms)), symbols[0], f"{tw[0]} per {bw[0]}"


@functools.lru_cache(maxsize=1)
def units() -> tuple[Unit, ...]:
    result = []
    for dimension, key in UNIT_KEYS:
        if " / " in key:
            forms, symbol, canonical = _ratio_forms(*key.split(" / "))
        elif " ** 3" in key:
            forms, symbol, canonical = _power_forms(key.split(" ** ")[0])
        else:
            forms, symbol, canonical = _simple_forms(key)
        forms += [forms[0][:1].upper() + forms[0][1:]]  # "Kilometers", as at the start of a sentence
        forms += INFORMAL.get(key, ())
        core = tuple(dict.fromkeys([forms[0], *([symbol] if symbol else []), *ALWAYS_TRAINED.get(key, ())]))
        result.append(Unit(_FACTOR_EXPRESSIONS.get(key, key), tuple(dict.fromkeys(forms)), dimension, core, canonical))
    names = {u.key: u.names for u in result}
    result = [replace(u, borrowed=names[BY_KIND[u.key][1]]) if u.key in BY_KIND else u for u in result]
    _check_unambiguous(result)
    return tuple(result)


@functools.lru_cache(maxsize=1)
def _owners() -> dict[str, Unit]:
    return {name: unit for unit in units() for name in unit.names}


def reading(spelling: str, kind: str | None = None) -> Unit | None:
    """The unit a spelling means beside a unit of `kind`: its owner, unless BY_KIND gives it another meaning
    in that kind ("oz" beside a quart is a fluid ounce); None for no unit of the vocabulary."""
    owner = _owners().get(spelling)
    if owner is None or kind is None or owner.dimension == kind:
        return owner
    for unit in units():
        if unit.dimension == kind and spelling in unit.borrowed:
            return unit
    return owner


def _check_unambiguous(all_units: list[Unit]) -> None:
    owner: dict[str, str] = {}
    for unit in all_units:
        for form in unit.names:
            if owner.setdefault(form, unit.key) != unit.key:
                raise ValueError(f"unit spelling {form!r} is claimed by both {owner[form]} and {unit.key}")
    kinds = {unit.key: unit.dimension for unit in all_units}
    for key, (kind, lender) in BY_KIND.items():  # a borrowed spelling must not be ambiguous inside one kind
        if kinds.get(key) != kind or kinds.get(lender) == kind:
            raise ValueError(f"BY_KIND: {key} must be a {kind} unit and {lender} of another kind")


HELD_OUT_SHARE = 0.3


@functools.cache
def split_forms(seed: int) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """{unit key: (training forms, held-out forms)}: about HELD_OUT_SHARE of each unit's spellings held out,
    at least one, never its core forms (plural name, main symbol) and never all but one."""
    rng = random.Random(seed)
    out = {}
    for unit in units():
        rest = [f for f in unit.names if f not in unit.core]
        rng.shuffle(rest)
        k = min(max(1, round(HELD_OUT_SHARE * len(unit.names))), len(unit.names) - 2)
        held = set(rest[:k])
        out[unit.key] = (tuple(f for f in unit.names if f not in held), tuple(f for f in unit.names if f in held))
    return out


# The base unit of each kind, in which the expression format writes every factor.
BASE_UNIT = {"length": "meter", "mass": "gram", "time": "second", "volume": "liter", "speed": "meter / second",
             "data": "byte"}


@functools.cache
def conversion_factor(src_key: str, dst_key: str) -> float:
    """How many `dst` in one `src`, from pint."""
    ureg = registry()
    ratio = ureg.parse_expression(src_key) / ureg.parse_expression(dst_key)
    return float(ratio.to("dimensionless").magnitude)


@functools.cache
def base_factor(unit_key: str, dimension: str) -> float:
    return conversion_factor(unit_key, BASE_UNIT[dimension])
