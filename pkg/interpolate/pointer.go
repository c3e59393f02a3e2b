package interpolate

import (
	"fmt"
	"strconv"
	"strings"
)

var (
	pointerDecoder = strings.NewReplacer("~0", "~", "~1", "/", "~2", "?", "~3", "=", "~7", ":")
	pointerEncoder = strings.NewReplacer("~", "~0", "/", "~1", "?", "~2", "=", "~3", ":", "~7")
)

// modifier shifts an array position: :prev, :next, or inserts around it: :before, :after.
type modifier int

const (
	modPrev modifier = iota
	modNext
	modBefore
	modAfter
)

var modifierNames = map[string]modifier{"prev": modPrev, "next": modNext, "before": modBefore, "after": modAfter}

func (m modifier) String() string {
	for k, v := range modifierNames {
		if v == m {
			return k
		}
	}
	return "?"
}

type tokenKind int

const (
	tokKey            tokenKind = iota // /name or /name?
	tokIndex                           // /0, /-1 (with modifiers)
	tokAfterLastIndex                  // /- (last token only)
	tokMatchingIndex                   // /name=value or /name=value?
)

// token is one segment of a go-patch path.
type token struct {
	kind      tokenKind
	key       string // map key (tokKey) or the field matched (tokMatchingIndex)
	value     string // the value matched (tokMatchingIndex)
	index     int
	optional  bool
	modifiers []modifier
}

// Pointer is a parsed go-patch path such as /instance_groups/name=api/jobs?/-.
type Pointer struct {
	tokens []token
}

// ParsePointer parses a go-patch path. The empty string is the whole document.
func ParsePointer(s string) (Pointer, error) {
	if s == "" {
		return Pointer{}, nil
	}
	if !strings.HasPrefix(s, "/") {
		return Pointer{}, fmt.Errorf("path %q must start with '/'", s)
	}
	parts := strings.Split(s[1:], "/")
	toks := make([]token, 0, len(parts))
	optional := false
	for i, part := range parts {
		isLast := i == len(parts)-1
		var mods []modifier
		if pieces := strings.Split(part, ":"); len(pieces) > 1 {
			part = pieces[0]
			for _, p := range pieces[1:] {
				m, ok := modifierNames[p]
				if !ok {
					return Pointer{}, fmt.Errorf("path %q: unknown modifier ':%s' (expected one of :prev, :next, :before, :after)", s, p)
				}
				mods = append(mods, m)
			}
		}
		if isLast && part == "-" {
			if len(mods) > 0 {
				return Pointer{}, fmt.Errorf("path %q: '-' (after the last item) takes no modifiers", s)
			}
			toks = append(toks, token{kind: tokAfterLastIndex})
			continue
		}
		if idx, err := strconv.Atoi(part); err == nil {
			toks = append(toks, token{kind: tokIndex, index: idx, modifiers: mods})
			continue
		}
		if strings.HasSuffix(part, "?") {
			optional = true
			part = strings.TrimSuffix(part, "?")
		}
		if kv := strings.SplitN(part, "=", 2); len(kv) == 2 {
			toks = append(toks, token{kind: tokMatchingIndex, key: pointerDecoder.Replace(kv[0]),
				value: pointerDecoder.Replace(kv[1]), optional: optional, modifiers: mods})
			continue
		}
		if len(mods) > 0 {
			return Pointer{}, fmt.Errorf("path %q: modifiers apply to array items, not to the map key %q", s, part)
		}
		toks = append(toks, token{kind: tokKey, key: pointerDecoder.Replace(part), optional: optional})
	}
	return Pointer{tokens: toks}, nil
}

// MustParsePointer is ParsePointer for constant paths; it panics on error.
func MustParsePointer(s string) Pointer {
	p, err := ParsePointer(s)
	if err != nil {
		panic(err)
	}
	return p
}

// String renders the pointer as go-patch writes it (the first optional token carries the '?').
func (p Pointer) String() string { return pointerString(p.tokens) }

func pointerString(toks []token) string {
	var b strings.Builder
	optional := false
	for _, t := range toks {
		b.WriteByte('/')
		switch t.kind {
		case tokIndex:
			b.WriteString(strconv.Itoa(t.index))
			writeMods(&b, t.modifiers)
		case tokAfterLastIndex:
			b.WriteByte('-')
		case tokMatchingIndex:
			b.WriteString(pointerEncoder.Replace(t.key))
			b.WriteByte('=')
			b.WriteString(pointerEncoder.Replace(t.value))
			if t.optional && !optional {
				b.WriteByte('?')
				optional = true
			}
			writeMods(&b, t.modifiers)
		case tokKey:
			b.WriteString(pointerEncoder.Replace(t.key))
			if t.optional && !optional {
				b.WriteByte('?')
				optional = true
			}
		}
	}
	return b.String()
}

func writeMods(b *strings.Builder, mods []modifier) {
	for _, m := range mods {
		b.WriteByte(':')
		b.WriteString(m.String())
	}
}
