"""Translate JSON Schema patterns (ECMA-262 syntax) into the POSIX extended regular expressions the codec runs."""

# outside a bracket expression
CLASS_ESCAPES = {
    "d": "[0-9]",
    "D": "[^0-9]",
    "s": "[[:space:]]",
    "S": "[^[:space:]]",
    "w": "[[:alnum:]_]",
    "W": "[^[:alnum:]_]",
}
# inside a bracket expression
BRACKET_ESCAPES = {"d": "0-9", "s": "[:space:]", "w": "[:alnum:]_"}
LITERAL_ESCAPES = set(".^$|()[]{}*+?\\")
PLAIN_ESCAPES = set("/-")
QUANTIFIERS = set("*+?}")


class PatternError(ValueError):
    pass


def to_posix(pattern):
    """Return the POSIX ERE for `pattern`; raise PatternError for syntax ERE cannot express."""
    out = []
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                raise PatternError("pattern ends with a lone backslash")
            esc = pattern[i + 1]
            if esc in CLASS_ESCAPES:
                out.append(CLASS_ESCAPES[esc])
            elif esc in LITERAL_ESCAPES:
                out.append("\\" + esc)
            elif esc in PLAIN_ESCAPES:
                out.append(esc)
            else:
                raise PatternError("escape \\%s has no POSIX equivalent" % esc)
            i += 2
        elif ch == "[":
            i = bracket(pattern, i, out)
        elif ch == "(" and pattern.startswith("(?", i):
            raise PatternError("groups starting with (? (lookaround, non-capturing) are not POSIX")
        elif ch == "?" and i > 0 and pattern[i - 1] in QUANTIFIERS and not escaped(pattern, i - 1):
            raise PatternError("lazy quantifiers are not POSIX")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def escaped(pattern, i):
    count = 0
    while i > 0 and pattern[i - 1] == "\\":
        count += 1
        i -= 1
    return count % 2 == 1


def bracket(pattern, start, out):
    """Translate the bracket expression at `start`; return the index after its closing ]."""
    i = start + 1
    parts = ["["]
    if i < len(pattern) and pattern[i] == "^":
        parts.append("^")
        i += 1
    first = True
    while i < len(pattern):
        ch = pattern[i]
        if ch == "]" and not first:
            parts.append("]")
            out.append("".join(parts))
            return i + 1
        if ch == "[" and pattern.startswith("[:", i):
            raise PatternError("POSIX classes like [:space:] are not valid in JSON Schema; write \\s")
        if ch == "\\":
            if i + 1 >= len(pattern):
                break
            esc = pattern[i + 1]
            if esc in BRACKET_ESCAPES:
                parts.append(BRACKET_ESCAPES[esc])
            elif esc in ".$|()[{}*+?/":
                parts.append(esc)
            else:
                raise PatternError("escape \\%s inside [...] has no POSIX equivalent" % esc)
            i += 2
        else:
            parts.append(ch)
            i += 1
        first = False
    raise PatternError("unterminated bracket expression")
