package labelcap

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

func TestCut(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		want  string
	}{
		{"tenant-a", 256, "tenant-a"},
		{"tenant-a", 6, "tenant"},
		{"tenant-a", 0, "tenant-a"},
		{"ab€cd", 4, "ab"}, // € is 3 bytes from offset 2: never cut inside it
		{"ab€cd", 5, "ab€"},
		{"\xff\xff\xff\xff", 2, "\xff\xff"},
	} {
		assert.Equal(t, tc.want, Cut(tc.in, tc.limit), "%q at %d", tc.in, tc.limit)
	}
	huge := strings.Repeat("é", 2<<20) // 4 MiB
	got := Cut(huge, 255)
	assert.LessOrEqual(t, len(got), 255)
	assert.True(t, utf8.ValidString(got))
}
