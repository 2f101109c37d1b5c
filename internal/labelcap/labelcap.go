// Package labelcap bounds the length of a label value taken from untrusted input (a tenant, a model, a
// prompt family): one request with a 4 MiB tenant name must not make every later metrics scrape huge.
package labelcap

import "unicode/utf8"

// Cut returns s cut to at most limit bytes, at a character boundary so the result stays valid UTF-8 when s
// was. A limit below 1 leaves s as it is.
func Cut(s string, limit int) string {
	if limit < 1 || len(s) <= limit {
		return s
	}
	end := limit
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	// A string of invalid bytes has no rune start to back up to: cut at the byte limit.
	if end == 0 {
		end = limit
	}
	return s[:end]
}
