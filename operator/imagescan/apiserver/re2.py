"""
Whether a CRD ``pattern`` compiles as Go's ``regexp`` (RE2 syntax), with Go's error text.

kube-apiserver refuses a CRD whose schema has a ``pattern`` that ``regexp.Compile`` refuses ("must be a valid
regular expression, but isn't: error parsing regexp: invalid repeat count: `{2,1224}`"). Python's ``re``
compiles most of those (lookarounds, backreferences, any repeat count), so the embedded server would accept a
CRD that a cluster refuses. This module re-creates the checks of Go's parser with Perl flags (what
``regexp.Compile`` uses) that a pattern can fail, and reports the same error code and excerpt.

Not re-created: the size and nesting limits ("expression too large", "expression nests too deeply") and the
list of Unicode script names (any name of three letters or more is taken for a script in ``\\p{Name}``).
Only stdlib.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_REPEAT = 1000  # Go's limit on {n,m} counts, and on their product when nested

_POSIX = frozenset(('alnum', 'alpha', 'ascii', 'blank', 'cntrl', 'digit', 'graph', 'lower', 'print', 'punct',
                    'space', 'upper', 'word', 'xdigit'))
_CATEGORIES = frozenset(['Any', 'C', 'L', 'M', 'N', 'P', 'S', 'Z']
                        + [f'{major}{minor}' for major, minors in (('C', 'cfos'), ('L', 'lmotu'), ('M', 'cen'),
                                                                   ('N', 'dlo'), ('P', 'cdefios'),
                                                                   ('S', 'ckmo'), ('Z', 'lps'))
                           for minor in minors])
_PERL_CLASSES = frozenset('dDsSwW')
_C_ESCAPES = {'a': 7, 'f': 12, 'n': 10, 'r': 13, 't': 9, 'v': 11}
_ZERO_WIDTH = frozenset('AbBz')  # \A \b \B \z, outside classes only
_FLAGS = frozenset('imsU')
_HEX = frozenset('0123456789abcdefABCDEF')
_OCTAL = frozenset('01234567')


class PatternError(Exception):
    """Go's ``*syntax.Error``: a code and the part of the pattern at fault."""

    def __init__(self, code: str, expr: str) -> None:
        super().__init__(f'error parsing regexp: {code}: `{expr}`')


@dataclass(eq=False)  # compared by identity: the pseudo-operators below are found by it
class _Node:
    """What the repeat-size check needs of a parsed regexp: repeat counts and nesting."""

    count: int | None = None  # m of x{n,m} (n when unbounded); None for anything else
    subs: list[_Node] = field(default_factory=list)


_OPEN, _BAR = _Node(), _Node()  # pseudo-operators on the stack: "(" and "|"


def error(pattern: str) -> str | None:
    """Go's error text for ``pattern`` (``error parsing regexp: ...``), or None when it compiles."""
    try:
        _Parser(pattern).parse()
    except PatternError as e:
        return str(e)
    return None


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.s = pattern
        self.stack: list[_Node] = []

    def parse(self) -> None:
        i, last_repeat = 0, None
        while i < len(self.s):
            repeat = None
            char = self.s[i]
            if char in '*+?{':
                i, repeat = self._repeat(i, last_repeat)
            elif char == '(':
                i = self._open(i)
            elif char == ')':
                self._close()
                i += 1
            elif char == '|':
                self.stack.append(_BAR)
                i += 1
            elif char == '[':
                i = self._class(i)
            elif char == '\\':
                i = self._backslash(i)
            else:
                self.stack.append(_Node())
                i += 1
            last_repeat = repeat
        if _OPEN in self.stack:
            raise PatternError('missing closing )', self.s)

    # --- Repetition ------------------------------------------------------------------------------

    def _repeat(self, i: int, last_repeat: int | None) -> tuple[int, int | None]:
        """A repeat operator at ``i``: the index after it and where it starts (None: a literal ``{``)."""
        if self.s[i] == '{':
            bounds = _bounds(self.s, i)
            if bounds is None:  # not a repeat: "{" is a literal, as in "a{,5}"
                self.stack.append(_Node())
                return i + 1, None
            low, high, after = bounds
            if low < 0 or low > MAX_REPEAT or high > MAX_REPEAT or 0 <= high < low:
                raise PatternError('invalid repeat count', self.s[i:after])
            count = high if high >= 0 else low
        else:
            after, count = i + 1, None
        if after < len(self.s) and self.s[after] == '?':  # non-greedy
            after += 1
        if last_repeat is not None:  # a** or x{2}{3}: Perl refuses stacked repeats
            raise PatternError('invalid nested repetition operator', self.s[last_repeat:after])
        if not self.stack or self.stack[-1] is _OPEN or self.stack[-1] is _BAR:
            raise PatternError('missing argument to repetition operator', self.s[i:after])
        node = _Node(count, [self.stack.pop()])
        if count is not None and count >= 2 and not _repeat_fits(node, MAX_REPEAT):
            raise PatternError('invalid repeat count', self.s[i:after])
        self.stack.append(node)
        return after, i

    # --- Groups ----------------------------------------------------------------------------------

    def _open(self, i: int) -> int:
        if not self.s.startswith('(?', i):
            self.stack.append(_OPEN)
            return i + 1
        rest = self.s[i:]
        name_at = 4 if rest.startswith('(?P<') else 3 if rest.startswith('(?<') else 0
        if name_at and len(rest) > name_at:
            return i + self._named_group(rest, name_at)
        return i + self._flags(rest)

    def _named_group(self, rest: str, name_at: int) -> int:
        end = rest.find('>')
        if end < 0:
            raise PatternError('invalid named capture', rest)
        name = rest[name_at:end]
        if not name or not all(char == '_' or char.isalnum() for char in name):
            raise PatternError('invalid named capture', rest[:end + 1])  # (?<=a) lands here: no lookbehind
        self.stack.append(_OPEN)
        return end + 1

    def _flags(self, rest: str) -> int:
        """``(?i)``, ``(?-s:...)`` and the like; anything else is Perl syntax RE2 lacks: ``(?=``, ``(?#``."""
        negated, saw_flag = False, False
        for index, char in enumerate(rest[2:], start=3):
            if char in _FLAGS:
                saw_flag = True
            elif char == '-' and not negated:
                negated, saw_flag = True, False
            elif char in ':)' and (saw_flag or not negated):
                if char == ':':
                    self.stack.append(_OPEN)
                return index
            else:
                raise PatternError('invalid or unsupported Perl syntax', rest[:index])
        raise PatternError('invalid or unsupported Perl syntax', rest)

    def _close(self) -> None:
        if _OPEN not in self.stack:
            raise PatternError('unexpected )', self.s)
        start = len(self.stack) - 1 - self.stack[::-1].index(_OPEN)
        subs = [node for node in self.stack[start + 1:] if node is not _BAR]
        del self.stack[start:]
        self.stack.append(_Node(None, subs))

    # --- Escapes and classes ---------------------------------------------------------------------

    def _backslash(self, i: int) -> int:
        after = i + 2
        following = self.s[i + 1:i + 2]
        if following == 'C':  # any byte: not supported
            raise PatternError('invalid escape sequence', self.s[i:after])
        if following == 'Q':  # \Q...\E: literals
            end = self.s.find('\\E', after)
            literal = self.s[after:] if end < 0 else self.s[after:end]
            self.stack += [_Node() for _ in literal]
            return len(self.s) if end < 0 else end + 2
        if following not in _ZERO_WIDTH:
            after = _class_escape(self.s, i)
        self.stack.append(_Node())
        return after

    def _class(self, i: int) -> int:
        j = i + 1
        if self.s[j:j + 1] == '^':
            j += 1
        first = True
        while first or self.s[j:j + 1] != ']':
            first = False
            j = _class_item(self.s, j, i)
        self.stack.append(_Node())
        return j + 1


def _bounds(s: str, i: int) -> tuple[int, int, int] | None:
    """``{n}``, ``{n,}``, ``{n,m}`` at ``i``: (n, m or -1 when unbounded, index after ``}``), or None."""
    low, j = _number(s, i + 1)
    if low is None:
        return None
    high: int | None = low
    if s[j:j + 1] == ',':
        if s[j + 1:j + 2] == '}':
            high, j = -1, j + 1
        else:
            high, j = _number(s, j + 1)
    if high is None or s[j:j + 1] != '}':
        return None
    return low, high, j + 1


def _number(s: str, i: int) -> tuple[int | None, int]:
    j = i
    while j < len(s) and s[j].isascii() and s[j].isdigit():
        j += 1
    digits = s[i:j]
    if not digits or (len(digits) > 1 and digits[0] == '0'):  # Go refuses leading zeros
        return None, j
    return (int(digits) if len(digits) <= 8 else -1), j  # -1: too big, refused as a count


def _repeat_fits(node: _Node, budget: int) -> bool:
    """Whether nested repeat counts multiply to at most ``budget`` (``(a{500}){3}`` does not)."""
    if node.count == 0:
        return True
    if node.count is not None:
        if node.count > budget:
            return False
        budget //= node.count
    return all(_repeat_fits(sub, budget) for sub in node.subs)


def _class_item(s: str, j: int, start: int) -> int:
    """One item of a class at ``j`` (``[:alpha:]``, ``\\pL``, ``\\d``, ``a`` or ``a-z``): the index after it."""
    if s.startswith('[:', j) and s.find(':]', j + 2) >= 0:
        end = s.find(':]', j + 2) + 2
        if s[j + 2:end - 2].removeprefix('^') not in _POSIX:
            raise PatternError('invalid character class range', s[j:end])
        return end
    if s.startswith(('\\p', '\\P', *(f'\\{c}' for c in _PERL_CLASSES)), j):
        return _class_escape(s, j)
    low, after = _class_char(s, j, start)
    if s[after:after + 1] == '-' and s[after + 1:after + 2] not in ('', ']'):
        high, end = _class_char(s, after + 1, start)
        if high < low:
            raise PatternError('invalid character class range', s[j:end])
        return end
    return after


def _class_char(s: str, j: int, start: int) -> tuple[int, int]:
    """A single character of a class: its code point and the index after it."""
    if j >= len(s):
        raise PatternError('missing closing ]', s[start:])
    if s[j] != '\\':
        return ord(s[j]), j + 1
    return _escape(s, j)


def _class_escape(s: str, i: int) -> int:
    """``\\pL``, ``\\p{Greek}``, ``\\d``... or a single-character escape at ``i``: the index after it."""
    following = s[i + 1:i + 2]
    if following in ('p', 'P'):
        return _unicode_class(s, i)
    if following and following in _PERL_CLASSES:
        return i + 2
    return _escape(s, i)[1]


def _unicode_class(s: str, i: int) -> int:
    if s[i + 2:i + 3] == '{':
        end = s.find('}', i)
        if end < 0:
            raise PatternError('invalid character class range', s[i:])
        name, after = s[i + 3:end], end + 1
    else:
        name, after = s[i + 2:i + 3], i + 3
    if not _known_class(name.removeprefix('^')):
        raise PatternError('invalid character class range', s[i:after])
    return after


def _known_class(name: str) -> bool:
    """A category (``L``, ``Lu``, ``Letter``...) or script (``Greek``) name, in any case (Go 1.25 looks names up
    ignoring case, spaces, ``_`` and ``-``). Scripts are not listed here: any longer name of letters passes."""
    if len(name) <= 2:
        return any(name.upper() == category.upper() for category in _CATEGORIES)
    return name.replace('_', '').replace('-', '').replace(' ', '').isalpha()


def _escape(s: str, i: int) -> tuple[int, int]:
    """A single-character escape at ``i`` (``\\.``, ``\\n``, ``\\x41``, ``\\101``): code point, index after."""
    if i + 1 >= len(s):
        raise PatternError('trailing backslash at end of expression', '')
    char = s[i + 1]
    if char.isascii() and not char.isalnum():  # escaped punctuation is itself
        return ord(char), i + 2
    if char in _OCTAL and (char == '0' or s[i + 2:i + 3] in _OCTAL):
        return _octal(s, i)  # \1 alone would be a backreference: refused below
    if char == 'x':
        return _hex(s, i)
    if char in _C_ESCAPES:
        return _C_ESCAPES[char], i + 2
    raise PatternError('invalid escape sequence', s[i:i + 2])


def _octal(s: str, i: int) -> tuple[int, int]:
    j = i + 2
    while j < i + 4 and s[j:j + 1] and s[j] in _OCTAL:
        j += 1
    return int(s[i + 1:j], 8), j


def _hex(s: str, i: int) -> tuple[int, int]:
    if s[i + 2:i + 3] == '{':
        end = s.find('}', i + 3)
        digits = s[i + 3:end] if end >= 0 else ''
        if not digits or not set(digits) <= _HEX or int(digits, 16) > 0x10FFFF:
            raise PatternError('invalid escape sequence', s[i:_hex_failure(s, i)])
        return int(digits, 16), end + 1
    digits = s[i + 2:i + 4]
    if len(digits) < 2 or not set(digits) <= _HEX:
        raise PatternError('invalid escape sequence', s[i:min(i + 4, len(s))])
    return int(digits, 16), i + 4


def _hex_failure(s: str, i: int) -> int:
    """Where Go stops reading a bad ``\\x{...}``: after the first character that is not a hex digit."""
    j = i + 3
    while j < len(s) and s[j] in _HEX:
        j += 1
    return min(j + 1, len(s))
