"""Values taken out of natural speech, one extractor per field type.

Each extractor finds the part of a recogniser-punctuated utterance that
answers a field ("my email is ada at example dot com. Thank you!" →
`ada@example.com`), or returns None when the utterance holds no such value.
`validators.validate_value` then judges and normalises what was found.

Bounded time whatever the input: the utterance is clipped to
`utterance.MAX_UTTERANCE_CHARS`, then walked token by token (str.split and
dictionary look-ups); the only regular expressions used are fullmatches of
single tokens already cut to a short length, or scans with no nested
repetition. bench/extractors.py measures them from 1 kB to 64 kB.
"""

from __future__ import annotations

import re

from callbot.dialog.domain.utterance import clip

# An email address is at most 254 characters; a token longer than that is not one.
MAX_TOKEN_CHARS = 254
_SENTENCE_END = ".!?"
_TRAILING = ".,!?;:\"')"
_EMAIL_WORDS = {
    "at": "@",
    "dot": ".",
    "period": ".",
    "underscore": "_",
    "dash": "-",
    "hyphen": "-",
    "minus": "-",
    "plus": "+",
}
# Spoken pieces walked on either side of "@" ("a d a", "example dot co dot uk").
_MAX_EMAIL_PIECES = 64
# An utterance gives one address, two with a correction: more "at"s are not addresses.
_MAX_EMAIL_CANDIDATES = 8
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_LOCAL = re.compile(r"[a-z0-9._%+'-]{1,64}")
DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_REPEAT = {"double": 2, "triple": 3}
_PHONE_CHARS = frozenset("0123456789+-.()")
_MIN_PHONE_DIGITS = 7
_MAX_PHONE_DIGITS = 15
_UNITS = {
    **{word: int(digit) for word, digit in DIGIT_WORDS.items() if word not in ("oh", "o")},
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_NUMBER_TOKEN = re.compile(r"[-+]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]{1,30})(?:\.[0-9]{1,15})?")
MONTHS = {
    name: index + 1
    for index, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for name in names
}
_ORDINAL_WORDS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "thirtieth": 30,
}
_NUMERIC_DATE = re.compile(r"([0-9]{1,4})[/.-]([0-9]{1,2})[/.-]([0-9]{1,4})")
_YES = frozenset(
    {"yes", "yeah", "yep", "yup", "true", "correct", "right", "sure", "affirmative", "absolutely"}
)
_YES_PHRASES = ("of course", "i do", "i am", "i will", "that's right", "please do")
_NO = frozenset({"no", "nope", "nah", "false", "incorrect", "negative", "never"})
_NO_PHRASES = ("not really", "i don't", "i do not", "i'm not", "i am not", "don't think so")
# What people say before the answer itself ("sure, it's Grace Hopper").
_LEAD_WORDS = frozenset({"sure", "yes", "yeah", "ok", "okay", "well", "um", "uh", "so", "oh"})
_LEAD_PHRASES = (
    "it's",
    "it is",
    "that's",
    "that is",
    "this is",
    "i'm",
    "i am",
    "call me",
    "the name is",
    "the name's",
    "name's",
    "you can call me",
)
# Lower-case words inside a name ("Guido van Rossum", "Ludwig van Beethoven").
_NAME_PARTICLES = frozenset(
    {"van", "von", "de", "der", "den", "da", "di", "del", "la", "le", "bin"}
)
_COURTESY = frozenset(
    {"thanks", "thank you", "thank you very much", "thanks a lot", "cheers", "please"}
)


_DIGITS = frozenset("0123456789")


def _is_digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "¹" and "٣", which int() refuses."""
    return bool(text) and text.isascii() and text.isdigit()


def tokens(utterance: str) -> list[str]:
    """The clipped utterance's words, lower case."""
    return clip(utterance).lower().replace("\u2019", "'").split()


def _ends_sentence(token: str) -> bool:
    # "A." is a spelled letter, not a sentence's end.
    return len(token) > 2 and token[-1] in _SENTENCE_END


# ---- email ----------------------------------------------------------------


def extract_email(utterance: str) -> str | None:
    """The address in spoken ("ada at example dot com") or written form, ending at
    the sentence's end: "... dot com. Thank you!" never glues "thank" on."""
    pieces = _email_pieces(tokens(utterance))
    first: str | None = None
    tried = 0
    for index, piece in enumerate(pieces):
        if piece.text != "@" and "@" not in piece.text:
            continue
        tried += 1
        if tried > _MAX_EMAIL_CANDIDATES:
            break
        if "@" in piece.text and piece.text != "@":
            local, _, domain = piece.text.partition("@")
            candidate = _join_local(pieces[:index], local) + "@" + domain
            tail = pieces[index + 1 :] if not piece.ends else []
            candidate = _extend_domain(candidate, tail)
        else:
            candidate = _join_local(pieces[:index], "") + "@"
            candidate = _extend_domain(candidate, pieces[index + 1 :])
        candidate = candidate.strip(".")
        if candidate.count("@") == 1 and not candidate.startswith("@"):
            if is_email_shaped(candidate):
                return candidate
            first = first or candidate
    return first


class _Piece:
    __slots__ = ("ends", "text")

    def __init__(self, text: str, ends: bool) -> None:
        self.text = text
        self.ends = ends


def _email_pieces(words: list[str]) -> list[_Piece]:
    pieces: list[_Piece] = []
    for word in words:
        if len(word) > MAX_TOKEN_CHARS:
            pieces.append(_Piece("", True))
            continue
        ends = _ends_sentence(word) or word.endswith(",")
        bare = word.rstrip(_TRAILING).lstrip("\"'(")
        text = _EMAIL_WORDS.get(bare, bare)
        # "j-o-h-n" spelled with dashes
        if len(text) > 2 and text.count("-") * 2 + 1 == len(text) and "@" not in text:
            text = text.replace("-", "")
        pieces.append(_Piece(text, ends))
    return pieces


def _join_local(before: list[_Piece], local: str) -> str:
    """The local part: the word(s) just before '@', joined when spelled out or
    joined by spoken dots/underscores ("a d a", "ada dot lovelace")."""
    parts: list[str] = [local] if local else []
    spelled = bool(local) and len(local) == 1
    for piece in reversed(before[-_MAX_EMAIL_PIECES:]):
        if piece.ends or not piece.text:
            break
        joiner = piece.text in {".", "_", "-", "+"}
        previous_joiner = bool(parts) and parts[0] in {".", "_", "-", "+"}
        if not parts or joiner or previous_joiner:
            parts.insert(0, piece.text)
            spelled = len(piece.text) == 1 and not joiner
            continue
        if spelled and len(piece.text) == 1:
            parts.insert(0, piece.text)
            continue
        break
    return "".join(parts).strip("._-+")


def _extend_domain(candidate: str, after: list[_Piece]) -> str:
    """Add spoken domain labels ("example", ".", "com") until the sentence ends or
    a word that is not a label follows a label."""
    expecting_label = candidate.endswith("@") or candidate.endswith(".")
    for piece in after[:_MAX_EMAIL_PIECES]:
        if not piece.text:
            break
        if expecting_label:
            if piece.text == ".":
                break
            candidate += piece.text
            expecting_label = piece.text.endswith(".")
        elif piece.text in (".", "-") or piece.text.startswith("."):
            candidate += piece.text
            expecting_label = piece.text in (".", "-")
        else:
            break
        if piece.ends:
            break
    return candidate


def is_email_shaped(text: str) -> bool:
    """A short token of local@label(.label)+ (each part matched alone, so linear)."""
    if len(text) > MAX_TOKEN_CHARS or text.count("@") != 1:
        return False
    local, _, domain = text.partition("@")
    labels = domain.split(".")
    return (
        bool(_LOCAL.fullmatch(local))
        and len(labels) >= 2
        and all(_LABEL.fullmatch(label) for label in labels)
        and labels[-1].isalpha()
        and len(labels[-1]) >= 2
    )


# ---- phone ----------------------------------------------------------------


def spoken_digits(utterance: str) -> str:
    """Digit words as digits ("four one five" → "4 1 5", "double five" → "5 5")."""
    out: list[str] = []
    repeat = 1
    for word in tokens(utterance):
        bare = word.strip(_TRAILING)
        if bare in _REPEAT:
            repeat = _REPEAT[bare]
            continue
        if bare == "plus":
            out.append("+")
        elif bare in DIGIT_WORDS and (bare not in ("o", "oh") or out):
            out.append(DIGIT_WORDS[bare] * repeat)
        elif _is_digits(bare) and repeat > 1 and len(bare) == 1:
            out.append(bare * repeat)
        else:
            out.append(word)
        repeat = 1
    return " ".join(out)


def extract_phone(utterance: str, region: str | None) -> str | None:
    """The phone number said or written, as the caller said it (validators
    normalise): the longest run of digit groups ("415, 555, 2671",
    "(415) 555-2671", "+1 415 555 2671") holding 7 to 15 digits."""
    best = ""
    best_digits = 0
    run: list[str] = []
    run_digits = 0
    for word in [*spoken_digits(utterance).split(), ""]:
        bare = word.rstrip(_TRAILING).lstrip("(")
        if bare and len(bare) <= 20 and all(char in _PHONE_CHARS for char in bare):
            run.append(bare)
            run_digits += sum((char in _DIGITS) for char in bare)
            if run_digits <= _MAX_PHONE_DIGITS and run_digits > best_digits:
                best, best_digits = " ".join(run), run_digits
            if not word.endswith((".", "!", "?")) or len(word) <= 2:
                continue
        run, run_digits = [], 0
    return best if best_digits >= _MIN_PHONE_DIGITS else None


# ---- numbers --------------------------------------------------------------


def extract_number(utterance: str) -> str | None:
    """The first number, written ("1,200", "3.5") or spoken ("twenty five")."""
    value: int | None = None
    current = 0
    for word in tokens(utterance):
        bare = word.strip(_TRAILING + "$%")
        if len(bare) <= 50 and _NUMBER_TOKEN.fullmatch(bare):
            return bare
        parts = bare.split("-") if "-" in bare else [bare]
        if all(part in _UNITS for part in parts):
            current += sum(_UNITS[part] for part in parts)
            value = current
        elif bare in _SCALES and value is not None:
            current *= _SCALES[bare]
            value = current
        elif bare == "and" and value is not None:
            continue
        elif value is not None:
            break
    return str(value) if value is not None else None


# ---- dates ----------------------------------------------------------------


def extract_date(utterance: str) -> str | None:
    """A date as YYYY-MM-DD from "March 3rd, 1990", "the 3rd of March 1990",
    "3/15/1990" (month first) or "1990-03-15"; None when no whole date is said."""
    month: int | None = None
    day: int | None = None
    year: int | None = None
    tens = 0  # "twenty" before "fifth"
    for word in tokens(utterance):
        bare = word.strip(_TRAILING)
        if len(bare) > 20:
            continue
        if "-" in bare and bare.split("-", 1)[0] in ("twenty", "thirty"):
            tens_word, _, bare = bare.partition("-")
            tens = _UNITS[tens_word]
        if bare in ("twenty", "thirty") and day is None:
            tens = _UNITS[bare]
            continue
        numeric = _NUMERIC_DATE.fullmatch(bare)
        if numeric:
            return _numeric_date(*numeric.groups())
        if bare in MONTHS and month is None:
            month = MONTHS[bare]
        elif bare in _ORDINAL_WORDS and day is None:
            day = tens + _ORDINAL_WORDS[bare]
        elif _is_digits(bare[:-2]) and bare[-2:] in ("st", "nd", "rd", "th") and day is None:
            day = int(bare[:-2])
        elif _is_digits(bare) and len(bare) == 4:
            year = int(bare)
        elif _is_digits(bare) and len(bare) <= 2 and day is None:
            day = int(bare)
        if month and day and year:
            return _iso(year, month, day)
    return None


def _numeric_date(first: str, second: str, third: str) -> str | None:
    if len(first) == 4:
        return _iso(int(first), int(second), int(third))
    if len(third) == 4:
        return _iso(int(third), int(first), int(second))
    return None


def _iso(year: int, month: int, day: int) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31 and 1000 <= year <= 9999):
        return None
    return f"{year:04d}-{month:02d}-{day:02d}"


# ---- yes / no -------------------------------------------------------------


def extract_boolean(utterance: str) -> bool | None:
    """Yes or no; None when both or neither were said."""
    words = {word.strip(_TRAILING) for word in tokens(utterance)}
    text = " ".join(tokens(utterance))
    said_no = bool(words & _NO) or any(phrase in text for phrase in _NO_PHRASES)
    said_yes = bool(words & _YES) or (
        not said_no and any(phrase in text for phrase in _YES_PHRASES)
    )
    if said_yes != said_no:
        return said_yes
    return None


# ---- choices --------------------------------------------------------------


def extract_choice(utterance: str, choices: tuple[str, ...]) -> str | None:
    """The one choice named (whole words), or the one picked by ordinal."""
    text = " " + " ".join(word.strip(_TRAILING) for word in tokens(utterance)) + " "
    named = [choice for choice in choices if f" {choice.lower()} " in text]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        # "not email, phone": the last one named after a "not" is meant.
        kept = [choice for choice in named if f" not {choice.lower()} " not in text]
        return kept[0] if len(kept) == 1 else None
    for word, position in (("first", 0), ("second", 1), ("third", 2), ("last", -1)):
        if f" {word} " in text and len(choices) > max(position, 0):
            return choices[position]
    return None


# ---- strings and names ----------------------------------------------------


def extract_string(utterance: str, is_name: bool) -> str | None:
    """The answer without lead-ins ("sure, it's", "my name is", fillers between
    them) and trailing courtesies ("Thank you."); a name is the fullest of its
    sentences ("Grace. Grace Hopper." gives "Grace Hopper")."""
    words = clip(utterance).split()
    kept = words[_after_lead_ins(words)]
    if is_name:
        kept = _fullest_name(kept)
    text = " ".join(kept)
    text = _without_courtesy(text).strip(" .,!?")
    return text or None


def _lowered(word: str) -> str:
    return word.lower().replace("\u2019", "'").strip(",.!?")


def _after_lead_ins(words: list[str]) -> slice:
    """The words after what people say before the answer itself, in any
    order and repeated ("Oh okay. It's, um, ...")."""
    lowered = [_lowered(word) for word in words]
    start, moved = 0, True
    while moved:
        before = start
        while start < len(words) and lowered[start] in _LEAD_WORDS:
            start += 1
        start = _after_my_x_is(lowered, start)
        for phrase in sorted(_LEAD_PHRASES, key=len, reverse=True):
            size = len(phrase.split())
            if " ".join(lowered[start : start + size]) == phrase:
                start += size
                break
        moved = start > before
    return slice(start, None)


def _fullest_name(words: list[str]) -> list[str]:
    """Of the answer's pieces (cut at sentence ends and commas, each without
    its lead-ins), the one with the most words that all look like a name's
    (capitalised, or a particle such as "van"); the first piece when none do."""
    pieces: list[list[str]] = [[]]
    for word in words:
        pieces[-1].append(word)
        if word[-1:] in _SENTENCE_END or word.endswith(","):
            pieces.append([])
    pieces = [piece[_after_lead_ins(piece)] for piece in pieces]
    pieces = [piece for piece in pieces if piece]
    names = [piece for piece in pieces if _looks_like_a_name(piece)]
    if names:
        return max(names, key=len)  # the first of the longest
    return pieces[0] if pieces else []


def _looks_like_a_name(words: list[str]) -> bool:
    if " ".join(_lowered(word) for word in words) in _COURTESY:
        return False
    stripped = [word.strip(",.!?") for word in words]
    return any(word[:1].isupper() for word in stripped) and all(
        word[:1].isupper() or word.lower() in _NAME_PARTICLES for word in stripped
    )


def _after_my_x_is(lowered: list[str], start: int) -> int:
    """Skip "my (full) name is", "my email address is" (at most 5 words between)."""
    if start < len(lowered) and lowered[start] == "my":
        for offset in range(1, 6):
            if start + offset < len(lowered) and lowered[start + offset] in ("is", "'s"):
                return start + offset + 1
            if start + offset < len(lowered) and lowered[start + offset].endswith("'s"):
                return start + offset + 1
    return start


def _without_courtesy(text: str) -> str:
    """Drop trailing sentences that are only courtesies ("... Thank you.")."""
    sentences = _sentences(text)
    while len(sentences) > 1 and sentences[-1].lower().strip(" .,!?") in _COURTESY:
        sentences.pop()
    joined = " ".join(sentences)
    lowered = joined.lower().rstrip(" .!?")
    for courtesy in sorted(_COURTESY, key=len, reverse=True):
        if lowered.endswith(", " + courtesy):
            return joined[: len(lowered) - len(courtesy) - 2]
    return joined


def _sentences(text: str) -> list[str]:
    sentences: list[str] = []
    current: list[str] = []
    for word in text.split():
        current.append(word)
        if word[-1] in _SENTENCE_END:
            sentences.append(" ".join(current))
            current = []
    if current:
        sentences.append(" ".join(current))
    return sentences
