package updateconfig

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func show(lines []DiffLine) string {
	s := ""
	for _, l := range lines {
		s += string(l.Op) + l.Text + "\n"
	}
	return s
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name, old, new string
		ctx            int
		want           string
	}{
		{"equal", "a\nb\n", "a\nb\n", 3, ""},
		{"new file", "", "a\nb\n", 3, "+a\n+b\n"},
		{"all removed", "a\n", "", 3, "-a\n"},
		{"insert in the middle", "a\nb\nc\n", "a\nb\nx\nc\n", 1, " b\n+x\n c\n"},
		{"replace", "a\nb\nc\n", "a\nB\nc\n", 0, "-b\n+B\n"},
		{"two hunks with a gap", "1\n2\n3\n4\n5\n6\n7\n8\n", "1\nX\n3\n4\n5\n6\nY\n8\n", 1,
			" 1\n-2\n+X\n 3\n....\n 6\n-7\n+Y\n 8\n"},
		{"move", "a\nb\nc\n", "b\nc\na\n", 0, "-a\n....\n+a\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, show(Diff(tt.old, tt.new, tt.ctx)))
		})
	}
}
