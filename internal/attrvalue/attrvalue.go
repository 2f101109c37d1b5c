// Package attrvalue reads typed values out of the attribute maps of the data the components receive. A
// missing attribute and one of a type that cannot carry the value read the same way, as unknown, so one odd
// attribute costs its own reading and nothing else.
package attrvalue

import "go.opentelemetry.io/collector/pdata/pcommon"

// String is the attribute as text, "" when it is missing: a string as it is, an int, double or bool in its
// usual text form (int 3 reads "3", true reads "true"), a map or slice as JSON. Sources disagree on whether
// an identifier such as a process id or a rank is a string or a number; reading every type as text lets
// both name the same thing.
func String(m pcommon.Map, key string) string {
	if v, ok := m.Get(key); ok {
		return v.AsString()
	}
	return ""
}

// Float is a double or int attribute as a float64; false when the attribute is missing or of another type.
// A string is not parsed: a number written as text is not what the semantic conventions ask of the source,
// and reading it as unknown keeps a value of the wrong kind out of the arithmetic.
func Float(m pcommon.Map, key string) (float64, bool) {
	v, ok := m.Get(key)
	if !ok {
		return 0, false
	}
	return Number(v)
}

// Number is a double or int value as a float64; false for any other type.
func Number(v pcommon.Value) (float64, bool) {
	switch v.Type() {
	case pcommon.ValueTypeDouble:
		return v.Double(), true
	case pcommon.ValueTypeInt:
		return float64(v.Int()), true
	}
	return 0, false
}
