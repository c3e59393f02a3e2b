package manifest

import (
	"fmt"
	"iter"
	"math/big"
	"net/netip"
	"sort"
	"strings"
)

// IPSet is a set of IP addresses kept as sorted, merged ranges, so a /16 costs
// one range and not 65536 addresses.
type IPSet struct {
	ranges []ipRange
}

type ipRange struct{ lo, hi netip.Addr } // inclusive

// ParseIPSet reads IP entries as BOSH subnets write them (reserved, static,
// static_ips): single addresses, ranges "10.0.0.10 - 10.0.0.20" (spaces
// optional) and CIDR blocks "10.0.0.0/28".
func ParseIPSet(entries []string) (*IPSet, error) {
	s := &IPSet{}
	for _, e := range entries {
		lo, hi, err := ParseIPEntry(e)
		if err != nil {
			return nil, err
		}
		s.AddRange(lo, hi)
	}
	return s, nil
}

// ParseIPEntry reads one entry: an address, a "lo - hi" range or a CIDR block.
func ParseIPEntry(e string) (lo, hi netip.Addr, err error) {
	t := strings.TrimSpace(e)
	if a, b, ok := strings.Cut(t, "-"); ok {
		lo, err1 := netip.ParseAddr(strings.TrimSpace(a))
		hi, err2 := netip.ParseAddr(strings.TrimSpace(b))
		if err1 != nil || err2 != nil {
			return lo, hi, fmt.Errorf("%q is not an IP range such as 10.0.0.10-10.0.0.20", e)
		}
		if lo.Is4() != hi.Is4() {
			return lo, hi, fmt.Errorf("range %q mixes IPv4 and IPv6", e)
		}
		if hi.Less(lo) {
			return lo, hi, fmt.Errorf("range %q ends before it starts", e)
		}
		return lo, hi, nil
	}
	if strings.Contains(t, "/") {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			return lo, hi, fmt.Errorf("%q is not a CIDR block: %v", e, err)
		}
		return prefixBounds(p.Masked())
	}
	a, err := netip.ParseAddr(t)
	if err != nil {
		return lo, hi, fmt.Errorf("%q is not an IP address", e)
	}
	return a, a, nil
}

func prefixBounds(p netip.Prefix) (lo, hi netip.Addr, err error) {
	lo = p.Addr()
	b := lo.AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	hi, _ = netip.AddrFromSlice(b)
	return lo, hi, nil
}

// ParseRange reads a subnet range (a CIDR block).
func ParseRange(cidr string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(cidr))
	if err != nil {
		return p, fmt.Errorf("%q is not a CIDR block such as 10.0.1.0/24", cidr)
	}
	return p.Masked(), nil
}

// Add adds one address.
func (s *IPSet) Add(a netip.Addr) { s.AddRange(a, a) }

// AddRange adds lo..hi inclusive.
func (s *IPSet) AddRange(lo, hi netip.Addr) {
	s.ranges = append(s.ranges, ipRange{lo, hi})
	sort.Slice(s.ranges, func(i, j int) bool { return s.ranges[i].lo.Less(s.ranges[j].lo) })
	merged := s.ranges[:0]
	for _, r := range s.ranges {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			next := last.hi.Next()
			if last.hi.Is4() == r.lo.Is4() && (!r.lo.Less(last.lo) && (!last.hi.Less(r.lo) || next == r.lo)) {
				if last.hi.Less(r.hi) {
					last.hi = r.hi
				}
				continue
			}
		}
		merged = append(merged, r)
	}
	s.ranges = merged
}

// AddSet adds every address of o.
func (s *IPSet) AddSet(o *IPSet) {
	for _, r := range o.ranges {
		s.AddRange(r.lo, r.hi)
	}
}

// Contains reports whether a is in the set.
func (s *IPSet) Contains(a netip.Addr) bool {
	i := sort.Search(len(s.ranges), func(i int) bool { return a.Less(s.ranges[i].lo) })
	if i == 0 {
		return false
	}
	r := s.ranges[i-1]
	return !r.hi.Less(a) && r.lo.Is4() == a.Is4()
}

// Len is the number of addresses (capped at the int range for huge IPv6 sets).
func (s *IPSet) Len() int {
	total := new(big.Int)
	for _, r := range s.ranges {
		d := new(big.Int).Sub(new(big.Int).SetBytes(r.hi.AsSlice()), new(big.Int).SetBytes(r.lo.AsSlice()))
		total.Add(total, d.Add(d, big.NewInt(1)))
	}
	if !total.IsInt64() || total.Int64() > int64(^uint(0)>>1) {
		return int(^uint(0) >> 1)
	}
	return int(total.Int64())
}

// IsEmpty reports whether the set has no address.
func (s *IPSet) IsEmpty() bool { return len(s.ranges) == 0 }

// All yields the addresses in ascending order.
func (s *IPSet) All() iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		for _, r := range s.ranges {
			for a := r.lo; ; a = a.Next() {
				if !yield(a) {
					return
				}
				if a == r.hi {
					break
				}
			}
		}
	}
}

// Subtract returns the addresses of s that are not in o.
func (s *IPSet) Subtract(o *IPSet) *IPSet {
	out := &IPSet{}
	for _, r := range s.ranges {
		pieces := []ipRange{r}
		for _, x := range o.ranges {
			var next []ipRange
			for _, p := range pieces {
				if p.lo.Is4() != x.lo.Is4() || x.hi.Less(p.lo) || p.hi.Less(x.lo) {
					next = append(next, p)
					continue
				}
				if p.lo.Less(x.lo) {
					next = append(next, ipRange{p.lo, x.lo.Prev()})
				}
				if x.hi.Less(p.hi) {
					next = append(next, ipRange{x.hi.Next(), p.hi})
				}
			}
			pieces = next
		}
		out.ranges = append(out.ranges, pieces...)
	}
	return out
}

// Intersects reports whether s and o share an address.
func (s *IPSet) Intersects(o *IPSet) bool {
	for _, r := range s.ranges {
		for _, x := range o.ranges {
			if r.lo.Is4() == x.lo.Is4() && !x.hi.Less(r.lo) && !r.hi.Less(x.lo) {
				return true
			}
		}
	}
	return false
}

// String writes the set as BOSH-style entries.
func (s *IPSet) String() string {
	parts := make([]string, len(s.ranges))
	for i, r := range s.ranges {
		if r.lo == r.hi {
			parts[i] = r.lo.String()
		} else {
			parts[i] = r.lo.String() + "-" + r.hi.String()
		}
	}
	return strings.Join(parts, ", ")
}

// SubnetIPs is a subnet's address plan.
type SubnetIPs struct {
	Range    netip.Prefix
	Gateway  netip.Addr
	Reserved *IPSet // as written, clipped to the range
	Static   *IPSet // as written
	// Restricted holds what is never handed out: the first (network) and last
	// (broadcast) addresses, the gateway and the reserved entries.
	Restricted *IPSet
	// Dynamic is what the director allocates automatically: the range minus
	// Restricted and Static.
	Dynamic *IPSet
}

// IPs expands the subnet's range, gateway, reserved and static entries. It fails
// on any placeholder or malformed entry (call it after interpolation, or check
// HasVars first).
func (s *Subnet) IPs() (*SubnetIPs, error) {
	rng, err := ParseRange(s.Range)
	if err != nil {
		return nil, fmt.Errorf("range: %w", err)
	}
	out := &SubnetIPs{Range: rng}
	all := &IPSet{}
	lo, hi, _ := prefixBounds(rng)
	all.AddRange(lo, hi)
	// As the director: the first and the last address of the range are never
	// assigned (for IPv6 too).
	restricted := &IPSet{}
	restricted.Add(lo)
	restricted.Add(hi)
	if s.Gateway != "" {
		gw, err := netip.ParseAddr(strings.TrimSpace(s.Gateway))
		if err != nil {
			return nil, fmt.Errorf("gateway: %q is not an IP address", s.Gateway)
		}
		out.Gateway = gw
		restricted.Add(gw)
	}
	if out.Reserved, err = ParseIPSet(s.Reserved); err != nil {
		return nil, fmt.Errorf("reserved: %w", err)
	}
	if out.Static, err = ParseIPSet(s.Static); err != nil {
		return nil, fmt.Errorf("static: %w", err)
	}
	restricted.AddSet(out.Reserved)
	out.Restricted = restricted
	out.Dynamic = all.Subtract(restricted).Subtract(out.Static)
	return out, nil
}

// HasVars reports whether any address field of the subnet is a placeholder.
func (s *Subnet) HasVars() bool {
	if HasVar(s.Range) || HasVar(s.Gateway) || s.Meta.IsVar("reserved") || s.Meta.IsVar("static") || s.Meta.IsVar("range") {
		return true
	}
	for _, l := range [][]string{s.Reserved, s.Static} {
		for _, e := range l {
			if HasVar(e) {
				return true
			}
		}
	}
	return false
}
