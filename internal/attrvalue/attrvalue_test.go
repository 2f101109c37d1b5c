package attrvalue

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

func attributes() pcommon.Map {
	m := pcommon.NewMap()
	m.PutStr("str", "vllm")
	m.PutStr("empty", "")
	m.PutStr("numeric_text", "3.5")
	m.PutInt("int", 42)
	m.PutInt("negative_int", -7)
	m.PutDouble("double", 0.25)
	m.PutDouble("nan", math.NaN())
	m.PutBool("bool", true)
	m.PutEmptySlice("slice").AppendEmpty().SetStr("a")
	m.PutEmptyMap("map").PutInt("k", 1)
	m.PutEmptyBytes("bytes").FromRaw([]byte{1, 2})
	m.PutEmpty("nil")
	return m
}

func TestString(t *testing.T) {
	m := attributes()
	for _, tc := range []struct {
		key, want string
	}{
		{"missing", ""},
		{"str", "vllm"},
		{"empty", ""},
		{"numeric_text", "3.5"},
		{"int", "42"},
		{"negative_int", "-7"},
		{"double", "0.25"},
		{"nan", "NaN"},
		{"bool", "true"},
		{"slice", `["a"]`},
		{"map", `{"k":1}`},
		{"bytes", "AQI="},
		{"nil", ""},
	} {
		t.Run(tc.key, func(t *testing.T) {
			assert.Equal(t, tc.want, String(m, tc.key))
		})
	}
}

func TestFloat(t *testing.T) {
	m := attributes()
	for _, tc := range []struct {
		key  string
		want float64
		ok   bool
	}{
		{"missing", 0, false},
		{"int", 42, true},
		{"negative_int", -7, true},
		{"double", 0.25, true},
		// Text, even text that looks like a number, is of the wrong type.
		{"str", 0, false},
		{"empty", 0, false},
		{"numeric_text", 0, false},
		{"bool", 0, false},
		{"slice", 0, false},
		{"map", 0, false},
		{"bytes", 0, false},
		{"nil", 0, false},
	} {
		t.Run(tc.key, func(t *testing.T) {
			got, ok := Float(m, tc.key)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got)
		})
	}
	// NaN is a double: it is returned as it is, for the caller to judge.
	got, ok := Float(m, "nan")
	assert.True(t, ok)
	assert.True(t, math.IsNaN(got))
}

func TestNumber(t *testing.T) {
	f, ok := Number(pcommon.NewValueInt(1 << 53))
	assert.True(t, ok)
	assert.Equal(t, float64(1<<53), f)
	_, ok = Number(pcommon.NewValueStr("1"))
	assert.False(t, ok)
	_, ok = Number(pcommon.NewValueEmpty())
	assert.False(t, ok)
}
