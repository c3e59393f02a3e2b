package erb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// MarshalContext encodes a context value as JSON for ruby, keeping the types
// ruby must see: a float stays a float (1.0 is written "1.0", not "1"), map
// keys are sorted (the director sorts property hashes), and NaN/Infinity are
// written as ruby's JSON reads them with allow_nan.
func MarshalContext(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := encode(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func encode(buf *bytes.Buffer, v any) error {
	switch t := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(t))
	case string:
		b, _ := json.Marshal(t)
		buf.Write(b)
	case int:
		buf.WriteString(strconv.FormatInt(int64(t), 10))
	case int64:
		buf.WriteString(strconv.FormatInt(t, 10))
	case int32:
		buf.WriteString(strconv.FormatInt(int64(t), 10))
	case uint64:
		buf.WriteString(strconv.FormatUint(t, 10))
	case uint:
		buf.WriteString(strconv.FormatUint(uint64(t), 10))
	case *big.Int:
		buf.WriteString(t.String())
	case float32:
		writeFloat(buf, float64(t))
	case float64:
		writeFloat(buf, t)
	case []any:
		buf.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encode(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case []string:
		l := make([]any, len(t))
		for i, s := range t {
			l[i] = s
		}
		return encode(buf, l)
	case map[string]any:
		return encodeMap(buf, t)
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, v := range t {
			m[fmt.Sprint(k)] = v
		}
		return encodeMap(buf, m)
	default:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Map:
			if rv.Type().Key().Kind() == reflect.String {
				m := make(map[string]any, rv.Len())
				it := rv.MapRange()
				for it.Next() {
					m[it.Key().String()] = it.Value().Interface()
				}
				return encodeMap(buf, m)
			}
		case reflect.Slice:
			l := make([]any, rv.Len())
			for i := range l {
				l[i] = rv.Index(i).Interface()
			}
			return encode(buf, l)
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		buf.Write(b)
	}
	return nil
}

func encodeMap(buf *bytes.Buffer, m map[string]any) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, _ := json.Marshal(k)
		buf.Write(b)
		buf.WriteByte(':')
		if err := encode(buf, m[k]); err != nil {
			return err
		}
	}
	buf.WriteByte('}')
	return nil
}

func writeFloat(buf *bytes.Buffer, f float64) {
	switch {
	case math.IsNaN(f):
		buf.WriteString("NaN")
	case math.IsInf(f, 1):
		buf.WriteString("Infinity")
	case math.IsInf(f, -1):
		buf.WriteString("-Infinity")
	default:
		s := strconv.FormatFloat(f, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eEn") {
			s += ".0"
		}
		buf.WriteString(s)
	}
}

// Psych's (YAML 1.1) plain scalar rules, from Psych::ScalarScanner.
var (
	yInteger = regexp.MustCompile(`^(?:[-+]?0b[0-1_,]+|[-+]?0[0-7_,]+|[-+]?(?:0|[1-9](?:[0-9]|,[0-9]|_[0-9])*)|[-+]?0x[0-9a-fA-F_,]+)$`)
	yFloat   = regexp.MustCompile(`^(?:[-+]?([0-9][0-9_,]*)?\.[0-9]*([eE][-+][0-9]+)?)$`)
	ySexInt  = regexp.MustCompile(`^[-+]?[0-9][0-9_]*(:[0-5]?[0-9]){1,2}$`)
	ySexFlt  = regexp.MustCompile(`^[-+]?[0-9][0-9_]*(:[0-5]?[0-9]){1,2}\.[0-9_]*$`)
	yTrue    = regexp.MustCompile(`(?i)^(yes|true|on)$`)
	yFalse   = regexp.MustCompile(`(?i)^(no|false|off)$`)
)

// DecodeYAML11 parses YAML the way ruby's Psych types it (YAML 1.1): `on`/`yes`
// are true, `012` is octal, `1.0` is a float, `12:30` is 750 (base 60), `1e3`
// stays a string. Maps come back as map[string]any.
func DecodeYAML11(data []byte) (any, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return nil, err
	}
	if n.Kind == 0 {
		return nil, nil
	}
	return yaml11(&n)
}

func yaml11(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return yaml11(n.Content[0])
	case yaml.AliasNode:
		return yaml11(n.Alias)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := yaml11(c)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" || (k.Value == "<<" && k.Style == 0) {
				m, err := yaml11(v)
				if err != nil {
					return nil, err
				}
				if mm, ok := m.(map[string]any); ok {
					for mk, mv := range mm {
						if _, set := out[mk]; !set {
							out[mk] = mv
						}
					}
				}
				continue
			}
			kv, err := yaml11(k)
			if err != nil {
				return nil, err
			}
			vv, err := yaml11(v)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(kv)] = vv
		}
		return out, nil
	}
	return scalar11(n)
}

func scalar11(n *yaml.Node) (any, error) {
	s := n.Value
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		return s, nil
	}
	switch n.ShortTag() {
	case "!!str", "!!binary", "!!timestamp":
		if n.Tag != "" && n.Tag != "!" && n.Style&yaml.TaggedStyle != 0 {
			return s, nil
		}
	case "!!null", "!!bool", "!!int", "!!float":
	default:
		return s, nil
	}
	switch {
	case s == "" || s == "~" || strings.EqualFold(s, "null"):
		return nil, nil
	case yTrue.MatchString(s):
		return true, nil
	case yFalse.MatchString(s):
		return false, nil
	case yInteger.MatchString(s):
		clean := strings.NewReplacer(",", "", "_", "").Replace(s)
		sign := ""
		if clean[0] == '-' || clean[0] == '+' {
			sign, clean = clean[:1], clean[1:]
		}
		base := 10
		switch {
		case strings.HasPrefix(clean, "0b"):
			base, clean = 2, clean[2:]
		case strings.HasPrefix(clean, "0x"):
			base, clean = 16, clean[2:]
		case len(clean) > 1 && clean[0] == '0':
			base, clean = 8, clean[1:]
		}
		b, ok := new(big.Int).SetString(sign+clean, base)
		if !ok {
			return s, nil
		}
		if b.IsInt64() {
			return int(b.Int64()), nil
		}
		return b, nil
	case ySexInt.MatchString(s):
		return sexagesimal(s, false), nil
	case ySexFlt.MatchString(s):
		return sexagesimal(s, true), nil
	case yFloat.MatchString(s) && s != ".":
		f, err := strconv.ParseFloat(strings.ReplaceAll(strings.ReplaceAll(s, ",", ""), "_", ""), 64)
		if err != nil {
			return s, nil
		}
		return f, nil
	}
	switch strings.ToLower(s) {
	case ".inf", "+.inf":
		return math.Inf(1), nil
	case "-.inf":
		return math.Inf(-1), nil
	case ".nan":
		return math.NaN(), nil
	}
	return s, nil
}

func sexagesimal(s string, float bool) any {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimLeft(s, "+-")
	s = strings.ReplaceAll(s, "_", "")
	parts := strings.Split(s, ":")
	// Psych weighs part e by 60**|e-2|, so "12:30" is 12*3600+30*60.
	var total float64
	for e, p := range parts {
		f, _ := strconv.ParseFloat(p, 64)
		total += f * math.Pow(60, math.Abs(float64(e-2)))
	}
	if neg {
		total = -total
	}
	if float {
		return total
	}
	return int(total)
}
