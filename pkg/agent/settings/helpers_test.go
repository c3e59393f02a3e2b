package settings

import (
	"fmt"
	"strings"
)

// fmtSscan matches arg against a "verb key [value]" format.
func fmtSscan(arg, format string, v ...*string) (int, error) {
	fs := strings.Fields(format)
	as := strings.Fields(arg)
	if len(as) != len(fs) || as[0] != fs[0] {
		return 0, fmt.Errorf("no match")
	}
	for i, p := range v {
		*p = as[i+1]
	}
	return len(v), nil
}
