package ui

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestTable(t *testing.T) {
	ios, _, out, _ := Test()
	tb := NewTable(ios, "name", "age")
	tb.AddRow("a\tb", "1")
	tb.AddRow("long-name", "22")
	assert.NoError(t, tb.Render())
	assert.Equal(t, "a b\t1\nlong-name\t22\n", out.String())

	ios.SetTTY(true)
	out.Reset()
	tb = NewTable(ios, "name", "age")
	tb.AddRow("a", "1")
	tb.AddRow("long-name", "22")
	assert.NoError(t, tb.Render())
	assert.Equal(t, "NAME       AGE\na          1\nlong-name  22\n", out.String())
}

func TestTimes(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ios, _, _, _ := Test()
	assert.Equal(t, "2026-01-02T03:00:00Z", ios.Time(now.Add(-4*time.Minute-5*time.Second), now))
	assert.Equal(t, "-", ios.Time(time.Time{}, now))
	ios.SetTTY(true)
	assert.Equal(t, "4 minutes ago", ios.Time(now.Add(-4*time.Minute), now))
	assert.Equal(t, "just now", FuzzyAgo(2*time.Second))
	assert.Equal(t, "1 hour ago", FuzzyAgo(time.Hour+time.Minute))
	assert.Equal(t, "3 days ago", FuzzyAgo(73*time.Hour))
	assert.Equal(t, "in 40 seconds", FuzzyAgo(-40*time.Second))
}
