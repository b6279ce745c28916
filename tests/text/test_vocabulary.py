"""The generator's unit vocabulary: built from pint, every spelling means its unit, the families split cleanly."""

import re

import pytest

from homework.text import vocabulary
from homework.text.vocabulary import INFORMAL, Unit, plural, registry


def units():
    """A fresh build, not the cached one the package made at import time: the build is what is under test."""
    return vocabulary.units.__wrapped__()


def split_forms(seed):
    return vocabulary.split_forms.__wrapped__(seed)


@pytest.mark.parametrize("name, expected", [
    ("inch", "inches"), ("foot", "feet"), ("century", "centuries"), ("day", "days"), ("fluid ounce", "fluid ounces"),
    ("cubic foot", "cubic feet"), ("metric ton", "metric tons"), ("gas", "gases"), ("box", "boxes"),
    ("calory", "calories"), ("key", "keys"), ("square penny", "square pennies"),
])
def test_plural(name, expected):
    assert plural(name) == expected


def test_a_name_is_a_lower_case_word_or_words_of_three_letters_or_more_other_than_the_symbol():
    assert vocabulary._is_name("metric ton", "t") and vocabulary._is_name("sec", "s")
    assert not any(vocabulary._is_name(form, "min") for form in ("min", "hr", "mL", "km2", "cu_ft"))


def test_a_spelling_outside_the_vocabulary_means_nothing_beside_any_kind():
    assert vocabulary.reading("furlongs") is None and vocabulary.reading("furlongs", "length") is None


def test_case_variants_keep_what_pint_reads_as_the_same_unit_or_not_at_all():
    assert vocabulary._case_variants(["l"], "liter") == ["L"]  # pint reads L as the liter too
    assert vocabulary._case_variants(["ml"], "milliliter") == []  # ML and Ml are pint's megaliter
    # KPH is a symbol already: only Kph is new (pint has no such unit, so it is free to mean ours)
    assert vocabulary._case_variants(["kph", "KPH"], "kilometer / hour") == ["Kph"]


def _pint_reading(form: str):
    """What pint makes of a spelling, after the rewrites people's forms need (per, cubic, ^3, cm3); None where
    pint has no reading."""
    text = form.replace(" per ", " / ").replace("^", "**")
    text = re.sub(r"^cubic (\w+)$", r"\1 ** 3", text)
    text = re.sub(r"^([A-Za-z]+)3$", r"\1 ** 3", text)
    text = re.sub(r"^cu (\w+)$", r"cu_\1", text)  # pint's cu_ft, cu_in, cu_yd
    try:
        return registry().parse_expression(text)
    except Exception:
        return None


def test_every_spelling_pint_can_read_means_its_own_unit():
    """No spelling is read by pint as another unit ("MG" megagauss, "Mg" megagram, "Min" megainch); the ones
    pint cannot read are this project's reviewed informal forms or case variants of pint's symbols."""
    unread = []
    for unit in units():
        if unit.key in vocabulary._FACTOR_EXPRESSIONS.values():  # pint's "decade" is a factor of ten, not years
            continue
        target = registry().parse_expression(unit.key)
        for form in unit.names:
            reading = _pint_reading(form)
            if reading is None:
                unread.append(form)
                continue
            if form in INFORMAL.get(unit.key, ()):  # G, M, T: pint reads them as gauss, molar, tesla
                continue
            assert reading.dimensionality == target.dimensionality and reading.to(target.units).magnitude == \
                pytest.approx(target.magnitude), (unit.key, form)
    informal = {f for forms in INFORMAL.values() for f in forms}
    for form in unread:
        assert form in informal or form != form.lower() or " " in form or "." in form, form


def test_the_reported_spellings_are_there_and_impostors_are_not():
    by_key = {u.key: set(u.names) for u in units()}
    assert {"kB", "KB", "K"} <= by_key["kilobyte"] and {"G", "GB", "gig"} <= by_key["gigabyte"]
    assert {"mph", "mi/h", "MPH"} <= by_key["mile / hour"] and {"kmh", "km/h", "kph"} <= by_key["kilometer / hour"]
    assert {"cm^3", "cm**3", "cm3", "cc", "cubic centimetres"} <= by_key["centimeter ** 3"]
    assert {"L", "l", "litre", "liters"} <= by_key["liter"] and {"mL", "ml", "millilitre"} <= by_key["milliliter"]
    assert {"KM", "Km"} <= by_key["kilometer"]
    assert not {"MG", "Mg"} & by_key["milligram"]  # megagauss, megagram
    assert "Min" not in by_key["minute"] and "S" not in by_key["second"]  # megainch, siemens
    assert not {"octet", "In", "IN", "a"} & set().union(*by_key.values())


def test_the_missing_units_of_the_structures_report_are_there():
    by_key = {u.key: set(u.names) for u in units()}
    assert {"in/s", "inches per second", "ips"} <= by_key["inch / second"]
    assert {"mm^3", "mm**3", "mm3", "cubic millimeters"} <= by_key["millimeter ** 3"]
    assert {"cm/s", "mm/s", "m/min", "ft/min", "km/s"} <= set().union(*by_key.values())
    assert {"dm^3", "yd^3", "cu yd"} <= set().union(*by_key.values())
    assert "incheses per second" not in by_key["inch / second"]  # pint's "inches" is a plural already
    assert "B" in by_key["byte"] and "cc" in by_key["centimeter ** 3"]


@pytest.mark.parametrize("spelling, kind, key", [
    ("oz", "volume", "fluid_ounce"), ("ounces", "volume", "fluid_ounce"), ("Ounces", "volume", "fluid_ounce"),
    ("oz", "mass", "ounce"), ("oz", None, "ounce"), ("oz", "length", "ounce"),  # no reading there: the owner's
    ("fl oz", "volume", "fluid_ounce"), ("G", "data", "gigabyte"), ("M", "data", "megabyte"), ("B", None, "byte"),
    ("kg", "volume", "kilogram"),
])
def test_a_spelling_is_read_by_the_kind_of_the_other_unit(spelling, kind, key):
    assert vocabulary.reading(spelling, kind).key == key


def test_every_borrowed_spelling_is_another_kinds_and_means_the_borrower_beside_its_kind():
    for unit in units():
        if unit.key in vocabulary.BY_KIND:
            kind, lender = vocabulary.BY_KIND[unit.key]
            assert unit.dimension == kind and set(unit.borrowed) == set(next(u for u in units() if u.key == lender).names)
            assert all(vocabulary.reading(b, kind).key == unit.key for b in unit.borrowed)
        else:
            assert not unit.borrowed
    assert vocabulary.reading("no such unit") is None


def test_a_borrowing_inside_one_kind_is_refused(monkeypatch):
    monkeypatch.setitem(vocabulary.BY_KIND, "fluid_ounce", ("volume", "cup"))
    with pytest.raises(ValueError, match="BY_KIND: fluid_ounce"):
        units()


def test_the_common_spellings_are_always_trained():
    forms = split_forms(7)
    for key, always in vocabulary.ALWAYS_TRAINED.items():
        assert set(always) <= set(forms[key][0]), key


def test_a_spelling_claimed_by_two_units_is_refused():
    with pytest.raises(ValueError, match="'m' is claimed by both meter and minute"):
        vocabulary._check_unambiguous([Unit("meter", ("m",), "length"), Unit("minute", ("min", "m"), "time")])


def test_the_family_split_is_seeded_keeps_core_forms_and_holds_out_some_of_every_unit():
    assert split_forms(7) == split_forms(7) and split_forms(7) != split_forms(8)
    assert split_forms(7) == vocabulary.split_forms(7)
    for unit in units():
        trained, held = split_forms(7)[unit.key]
        assert set(unit.core) <= set(trained)
        assert held and set(trained) | set(held) == set(unit.names) and not set(trained) & set(held)
        assert len(held) <= max(1, round(vocabulary.HELD_OUT_SHARE * len(unit.names)))


def test_the_vocabulary_and_its_split_change_only_deliberately(snapshot):
    """Every spelling of every unit, its core forms, standard name and held-out spellings: the data is built
    from these, so a change here changes what the model learns and what the held-out family measures.
    Regenerate with `pytest tests/text/test_vocabulary.py --snapshot-update` (and `python -m homework.datagen`)."""
    from homework.datagen.generate import SEED

    held = split_forms(SEED)
    assert {u.key: {"dimension": u.dimension, "canonical": u.canonical, "core": list(u.core), "forms": list(u.names),
                    "held_out": list(held[u.key][1]), **({"borrowed": list(u.borrowed)} if u.borrowed else {})}
            for u in units()} == snapshot
