package mlcmetrics

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse: whatever the endpoint sends, Parse never panics, keeps its error report bounded, and what it
// keeps is well formed: names and label values valid UTF-8, no label repeated in a sample, every sample in
// the family of its name, and the sample count adding up.
func FuzzParse(f *testing.F) {
	f.Add(page(f))
	f.Add([]byte("k{a=1,b=\"x\\\"y\"}\t2\n# /scope\n\nk_sum 3\n<html>\nk\tnan\nk\tTrue"))
	f.Add([]byte("spec_decode_accept_len_accept_len{step=0}\t1.0\nx{=}\t\nx{a=1\t2"))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, limit := range []int{0, 3} {
			r := Parse(body, limit)
			if len(r.Errors) > 10 || r.ErrorCount < len(r.Errors) {
				t.Fatalf("error report: %d listed of %d", len(r.Errors), r.ErrorCount)
			}
			kept := 0
			for _, fam := range r.Families {
				for _, s := range fam.Samples {
					kept++
					if s.Name != fam.Name || !utf8.ValidString(s.Name) || strings.ContainsAny(s.Name, " \t{") {
						t.Fatalf("sample %q in family %q", s.Name, fam.Name)
					}
					seen := map[string]bool{}
					for _, l := range s.Labels {
						if seen[l.Name] || !utf8.ValidString(l.Value) || l.Name == "" {
							t.Fatalf("labels %v", s.Labels)
						}
						seen[l.Name] = true
					}
				}
			}
			if !r.OverLimit && kept != r.Samples {
				t.Fatalf("kept %d samples, counted %d", kept, r.Samples)
			}
			if r.OverLimit && (limit == 0 || kept != limit+1 || r.Samples < kept) {
				t.Fatalf("over limit %d: kept %d, counted %d", limit, kept, r.Samples)
			}
		}
	})
}
