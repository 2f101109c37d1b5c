package golden

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"testing"
)

// exact fails the test unless expected and actual, as OTLP JSON, are the same document once attribute lists
// are in key order. It names the first place they differ.
func exact(tb testing.TB, path string, expected, actual func() ([]byte, error)) {
	tb.Helper()
	want, err := canonical(expected)
	if err != nil {
		tb.Fatalf("golden %s: %v", path, err)
	}
	got, err := canonical(actual)
	if err != nil {
		tb.Fatalf("golden %s: %v", path, err)
	}
	if where, w, g, differ := firstDifference("", want, got); differ {
		tb.Fatalf("output differs from %s at %s: expected %s, actual %s\n(if the change is intended, rerun with -update and review the diff)",
			path, where, brief(w), brief(g))
	}
}

func canonical(marshal func() ([]byte, error)) (any, error) {
	b, err := marshal()
	if err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	sortKeyValues(doc)
	return doc, nil
}

// sortKeyValues puts every list of {"key": ..., "value": ...} objects (attributes, key-value lists) in key
// order, everywhere in doc.
func sortKeyValues(doc any) {
	switch v := doc.(type) {
	case map[string]any:
		for _, child := range v {
			sortKeyValues(child)
		}
	case []any:
		for _, child := range v {
			sortKeyValues(child)
		}
		if isKeyValues(v) {
			sort.SliceStable(v, func(i, j int) bool {
				return v[i].(map[string]any)["key"].(string) < v[j].(map[string]any)["key"].(string)
			})
		}
	}
}

func isKeyValues(list []any) bool {
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := m["key"].(string); !ok {
			return false
		}
		for k := range m {
			if k != "key" && k != "value" {
				return false
			}
		}
	}
	return len(list) > 0
}

// firstDifference walks both documents in order and returns the path of the first value that differs.
func firstDifference(where string, want, got any) (string, any, any, bool) {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return where, want, got, true
		}
		keys := make([]string, 0, len(w)+len(g))
		for k := range w {
			keys = append(keys, k)
		}
		for k := range g {
			if _, seen := w[k]; !seen {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			if p, a, b, differ := firstDifference(where+"."+k, w[k], g[k]); differ {
				return p, a, b, true
			}
		}
		return "", nil, nil, false
	case []any:
		g, ok := got.([]any)
		if !ok {
			return where, want, got, true
		}
		for i := 0; i < len(w) || i < len(g); i++ {
			var a, b any
			if i < len(w) {
				a = w[i]
			}
			if i < len(g) {
				b = g[i]
			}
			if p, x, y, differ := firstDifference(where+"["+strconv.Itoa(i)+"]", a, b); differ {
				return p, x, y, true
			}
		}
		return "", nil, nil, false
	}
	if !reflect.DeepEqual(want, got) {
		return where, want, got, true
	}
	return "", nil, nil, false
}

func brief(v any) string {
	if v == nil {
		return "nothing"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
