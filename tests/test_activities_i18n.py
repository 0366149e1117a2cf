"""The message catalogues: the compiled .mo files are committed (CI may have no gettext), so they
must say exactly what the .po files say, and every Polish entry must be translated."""

import ast
import gettext
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCALE = ROOT / "locale"
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]")


def po_entries(path: Path) -> dict:
    """msgid -> msgstr of a .po file, multi-line strings joined, fuzzy entries reported as
    untranslated. A plural entry gives one item per form, keyed (msgid, n) as gettext keys them."""
    entries, current, field, fuzzy = {}, {}, None, False
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if line.startswith(("msgid ", "msgstr ", "msgid_plural ", "msgstr[")):
            field, _, value = line.partition(" ")
            current[field] = ast.literal_eval(value)
        elif line.startswith('"') and field:
            current[field] += ast.literal_eval(line)
        elif line.startswith("#,") and "fuzzy" in line:
            fuzzy = True
        elif not line.strip() and current:
            assert "msgctxt" not in current
            forms = {int(k[7:-1]): v for k, v in current.items() if k.startswith("msgstr[")}
            if "msgid_plural" in current:
                entries.update({(current["msgid"], n): "" if fuzzy else v for n, v in forms.items()})
            else:
                entries[current["msgid"]] = "" if fuzzy and current["msgid"] else current.get("msgstr", "")
            current, field, fuzzy = {}, None, False
        elif line.startswith("msgctxt"):
            raise AssertionError(f"{path}: the parser here knows no msgctxt")
    entries.pop("", None)  # the header
    return entries


def mo_catalogue(path: Path) -> dict[str, str]:
    with path.open("rb") as handle:
        catalogue = dict(gettext.GNUTranslations(handle)._catalog)
    catalogue.pop("", None)
    return catalogue


@pytest.mark.parametrize("language", ["pl", "en"])
def test_the_compiled_catalogue_matches_the_po_file(language):
    folder = LOCALE / language / "LC_MESSAGES"
    po = po_entries(folder / "django.po")
    mo = mo_catalogue(folder / "django.mo")
    # msgfmt leaves untranslated entries out of the .mo.
    assert mo == {msgid: msgstr for msgid, msgstr in po.items() if msgstr}, (
        f"{folder}/django.mo is stale: run `manage.py compilemessages` and commit it"
    )


def test_every_polish_entry_is_translated_and_keeps_its_placeholders():
    po = po_entries(LOCALE / "pl" / "LC_MESSAGES" / "django.po")
    assert len(po) > 150
    assert [msgid for msgid, msgstr in po.items() if not msgstr] == []
    for key, msgstr in po.items():
        msgid = key[0] if isinstance(key, tuple) else key  # a plural form keeps the singular's
        assert sorted(PLACEHOLDER.findall(msgid)) == sorted(PLACEHOLDER.findall(msgstr)), key


def _template_strings() -> set[str]:
    found = set()
    for path in [*(ROOT / "templates" / "activities").glob("*.html"), ROOT / "templates" / "base.html"]:
        text = path.read_text(encoding="utf-8")
        found |= {m[1] for m in re.findall(r"""\{% translate (["'])(.*?)\1 %\}""", text)}
        assert "blocktranslate" not in text, "extend the scan below before using blocktranslate"
    return found


def _python_strings() -> set[str]:
    found = set()
    call = re.compile(r"""\b(?:_|gettext|gettext_lazy)\(\s*("(?:[^"\\]|\\.)*")\s*[,)]""")
    for path in (ROOT / "activities").glob("*.py"):
        found |= {ast.literal_eval(m) for m in call.findall(path.read_text(encoding="utf-8"))}
    return found


def test_every_string_of_the_activities_is_in_the_polish_catalogue():
    po = po_entries(LOCALE / "pl" / "LC_MESSAGES" / "django.po")
    wanted = _template_strings() | _python_strings()
    assert len(wanted) > 150
    missing = sorted(wanted - set(po))
    assert missing == [], "run `manage.py makemessages -l pl -l en`, translate, then compilemessages"
