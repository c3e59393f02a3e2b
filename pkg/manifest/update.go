package manifest

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Update is an update block: the deployment's, or an instance group's override.
// Nil pointers are values not given, so an override can be merged field by field.
type Update struct {
	Meta                          Meta            `yaml:"-"`
	Canaries                      *CountOrPercent `yaml:"canaries"`
	MaxInFlight                   *CountOrPercent `yaml:"max_in_flight"`
	CanaryWatchTime               *WatchTime      `yaml:"canary_watch_time"`
	UpdateWatchTime               *WatchTime      `yaml:"update_watch_time"`
	Serial                        *bool           `yaml:"serial"`
	VMStrategy                    string          `yaml:"vm_strategy"`
	InitialDeployAZUpdateStrategy string          `yaml:"initial_deploy_az_update_strategy"`
}

// VM strategies and AZ update strategies.
const (
	VMStrategyDeleteCreate     = "delete-create"
	VMStrategyCreateSwapDelete = "create-swap-delete"
	AZUpdateSerial             = "serial"
	AZUpdateParallel           = "parallel"
)

// Merge returns u with every field override sets replacing u's (BOSH: the
// instance group's update block overrides the deployment's, key by key).
func (u Update) Merge(override *Update) Update {
	if override == nil {
		return u
	}
	out := u
	if override.Canaries != nil {
		out.Canaries = override.Canaries
	}
	if override.MaxInFlight != nil {
		out.MaxInFlight = override.MaxInFlight
	}
	if override.CanaryWatchTime != nil {
		out.CanaryWatchTime = override.CanaryWatchTime
	}
	if override.UpdateWatchTime != nil {
		out.UpdateWatchTime = override.UpdateWatchTime
	}
	if override.Serial != nil {
		out.Serial = override.Serial
	}
	if override.VMStrategy != "" {
		out.VMStrategy = override.VMStrategy
	}
	if override.InitialDeployAZUpdateStrategy != "" {
		out.InitialDeployAZUpdateStrategy = override.InitialDeployAZUpdateStrategy
	}
	return out
}

// IsSerial is the serial flag, true by default.
func (u Update) IsSerial() bool { return u.Serial == nil || *u.Serial }

// Strategy is the vm_strategy, delete-create by default.
func (u Update) Strategy() string {
	if u.VMStrategy == "" {
		return VMStrategyDeleteCreate
	}
	return u.VMStrategy
}

// InitialAZStrategy is initial_deploy_az_update_strategy, serial by default.
func (u Update) InitialAZStrategy() string {
	if u.InitialDeployAZUpdateStrategy == "" {
		return AZUpdateSerial
	}
	return u.InitialDeployAZUpdateStrategy
}

// CountOrPercent is an update value written as an integer or as "N%" of the
// instance group's size (canaries, max_in_flight).
type CountOrPercent struct {
	N       int
	Percent bool
}

func (c *CountOrPercent) decodeScalar(value, tag string) error {
	p, err := ParseCountOrPercent(value)
	if err != nil {
		return err
	}
	*c = p
	return nil
}

// ParseCountOrPercent reads "3", "25%" or "25 %".
func ParseCountOrPercent(s string) (CountOrPercent, error) {
	t := strings.TrimSpace(s)
	if strings.HasSuffix(t, "%") {
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(t, "%")))
		if err != nil || n < 0 {
			return CountOrPercent{}, fmt.Errorf("expected an integer or a percentage such as 25%%, got %q", s)
		}
		return CountOrPercent{N: n, Percent: true}, nil
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 {
		return CountOrPercent{}, fmt.Errorf("expected an integer or a percentage such as 25%%, got %q", s)
	}
	return CountOrPercent{N: n}, nil
}

func (c CountOrPercent) String() string {
	if c.Percent {
		return strconv.Itoa(c.N) + "%"
	}
	return strconv.Itoa(c.N)
}

// value is the director's NumericalValueCalculator: an integer as written; a
// percentage of size with integer division (floored: 25% of 10 is 2), capped
// at size.
func (c CountOrPercent) value(size int) int {
	if !c.Percent {
		return c.N
	}
	return min(c.N*size/100, size)
}

// Of resolves the value against a group of size instances, capped at size and
// never negative.
func (c CountOrPercent) Of(size int) int {
	return max(0, min(c.value(size), size))
}

// MaxInFlight resolves max_in_flight for a group (or AZ) of size instances as
// the director does: never below 1 (so 0 and 0% mean 1).
func (c CountOrPercent) MaxInFlight(size int) int {
	return max(1, c.value(size))
}

// Canaries resolves canaries for a group of size instances (0 is allowed).
func (c CountOrPercent) Canaries(size int) int { return c.Of(size) }

// WatchTime is canary_watch_time / update_watch_time: milliseconds, as one
// number (Min = Max) or a range "low-high".
type WatchTime struct {
	Min, Max int // milliseconds
}

func (w *WatchTime) decodeScalar(value, tag string) error {
	p, err := ParseWatchTime(value)
	if err != nil {
		return err
	}
	*w = p
	return nil
}

// ParseWatchTime reads "30000" or "1000-30000" (spaces around the dash allowed).
// A single number n means the range n-n, as the director reads it.
func ParseWatchTime(s string) (WatchTime, error) {
	bad := func() (WatchTime, error) {
		return WatchTime{}, fmt.Errorf("expected milliseconds as a number or a range such as 1000-30000, got %q", s)
	}
	t := strings.TrimSpace(s)
	if lo, hi, ok := strings.Cut(t, "-"); ok {
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b, err2 := strconv.Atoi(strings.TrimSpace(hi))
		if err1 != nil || err2 != nil || a < 0 || b < 0 {
			return bad()
		}
		if a > b {
			return WatchTime{}, fmt.Errorf("watch time range %q starts after it ends", s)
		}
		return WatchTime{Min: a, Max: b}, nil
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 {
		return bad()
	}
	return WatchTime{Min: n, Max: n}, nil
}

func (w WatchTime) String() string {
	if w.Min == w.Max {
		return strconv.Itoa(w.Min)
	}
	return fmt.Sprintf("%d-%d", w.Min, w.Max)
}

// MinDuration and MaxDuration give the range as durations.
func (w WatchTime) MinDuration() time.Duration { return time.Duration(w.Min) * time.Millisecond }
func (w WatchTime) MaxDuration() time.Duration { return time.Duration(w.Max) * time.Millisecond }

// Schedule is the director's watch schedule (DIR:starter.rb watch_schedule):
// sleep Min first, then poll every step until Max, where step is (Max-Min)/9
// clamped to 1-15 s. The engine sleeps each entry in turn and checks the
// instance after each; after the last one it gives up.
func (w WatchTime) Schedule() []time.Duration {
	delta := float64(w.Max - w.Min)
	step := min(max(1000, delta/9), 15000)
	out := []time.Duration{w.MinDuration()}
	for i := 0; i < int(delta/step); i++ {
		out = append(out, time.Duration(step*float64(time.Millisecond)))
	}
	return out
}

// PollInterval is how often the director polls get_state while waiting in the
// window: (max-min)/9 clamped to 1-15 s (DIR:starter.rb watch_schedule).
func (w WatchTime) PollInterval() time.Duration {
	d := (w.MaxDuration() - w.MinDuration()) / 9
	if d < time.Second {
		d = time.Second
	}
	if d > 15*time.Second {
		d = 15 * time.Second
	}
	return d
}
