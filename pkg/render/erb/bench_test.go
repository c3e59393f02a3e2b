package erb

import (
	"fmt"
	"strings"
	"testing"
)

// distinctTemplates are n different templates in the styles real releases use:
// p with defaults, if_p/else, a def helper, link iteration, JSON and YAML output.
func distinctTemplates(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		var b strings.Builder
		fmt.Fprintf(&b, "# template %d for <%%= spec.name %%>/<%%= spec.index %%>\n", i)
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, "<%% def port%d; if_p(\"srv.ports.http\") { |v| return v.to_i + %d }; 0; end -%%>\nport: <%%= port%d %%>\n", i, i, i)
		case 1:
			fmt.Fprintf(&b, "<%% link(\"db\").instances.each do |inst| -%%>\nserver s%d-<%%= inst.index %%> <%%= inst.address %%>:<%%= link(\"db\").p(\"db.port\") %%>\n<%% end -%%>\n", i)
		case 2:
			fmt.Fprintf(&b, "<%%= JSON.pretty_generate(\"id\" => %d, \"settings\" => p(\"app.settings\"), \"az\" => spec.az) %%>\n", i)
		case 3:
			fmt.Fprintf(&b, "<%% if_p(\"srv.nope\") do |x| -%%>\n<%%= x %%>\n<%% end.else do -%%>\nvalue%d: <%%= p(\"srv.missing\", %d) %%>\n<%% end -%%>\n", i, i)
		case 4:
			fmt.Fprintf(&b, "<%%= YAML.dump(\"n%d\" => p(\"net.cidrs\"), \"ratio\" => p(\"srv.ratio\")) %%>\n", i)
		}
		out[i] = []byte(b.String())
	}
	return out
}

// BenchmarkRender100DistinctTemplates renders 100 distinct templates as one
// deploy does: start the engine (one ruby process), render, stop it.
func BenchmarkRender100DistinctTemplates(b *testing.B) {
	needRuby(b)
	tmpls := distinctTemplates(100)
	ctx := testContext(b)
	for b.Loop() {
		e, err := New(Options{Procs: 1})
		if err != nil {
			b.Fatal(err)
		}
		for i, src := range tmpls {
			if _, err := e.Render(fmt.Sprintf("t%d.erb", i), src, ctx); err != nil {
				b.Fatal(err)
			}
		}
		if err := e.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRender100DistinctTemplatesWarm is the same with the process already
// running (later jobs and instances of a deploy).
func BenchmarkRender100DistinctTemplatesWarm(b *testing.B) {
	needRuby(b)
	tmpls := distinctTemplates(100)
	ctx := testContext(b)
	e, err := New(Options{Procs: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Render("warm.erb", []byte("<%= 1 %>"), ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		for i, src := range tmpls {
			if _, err := e.Render(fmt.Sprintf("t%d.erb", i), src, ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
}
