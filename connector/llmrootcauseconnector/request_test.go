package llmrootcauseconnector

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/servescope/servescope/internal/attrvalue"
	"github.com/servescope/servescope/internal/schema"
)

// The one pass over a span's attributes reads what a lookup per key reads: each number as a double or an
// int, NaN where missing or of another type, and the id and model strings whatever their type.
func TestSpanFieldsReadWhatLookupsRead(t *testing.T) {
	stringKeys := []string{schema.AttrGenAIRequestID, schema.AttrGenAIResponseModel, schema.AttrGenAIRequestModel}
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 2000; n++ {
		attrs := pcommon.NewMap()
		attrs.PutStr("http.route", "/v1/completions") // keys the explanation does not read, around the ones it does
		for _, key := range append(append([]string(nil), boundedAttributes[:]...), stringKeys...) {
			switch rng.IntN(6) {
			case 0: // missing
			case 1:
				attrs.PutDouble(key, rng.Float64()*100)
			case 2:
				attrs.PutInt(key, rng.Int64N(1<<20)-10)
			case 3:
				attrs.PutStr(key, "12.5")
			case 4:
				attrs.PutBool(key, true)
			case 5:
				attrs.PutDouble(key, math.NaN())
			}
			attrs.PutInt("other."+key, 1)
		}
		f := readSpanFields(attrs)
		for i, key := range boundedAttributes {
			_, present := attrs.Get(key)
			want, numeric := attrvalue.Float(attrs, key)
			assert.Equal(t, present, f.seen&(1<<i) != 0, "%s seen", key)
			require.Equal(t, numeric, f.numeric&(1<<i) != 0, "%s numeric", key)
			if numeric {
				if math.IsNaN(want) {
					assert.True(t, math.IsNaN(f.numbers[i]), key)
				} else {
					assert.Equal(t, want, f.numbers[i], key)
				}
			} else {
				assert.True(t, math.IsNaN(f.numbers[i]), "%s: not a number reads as NaN", key)
			}
		}
		assert.Equal(t, attrvalue.String(attrs, schema.AttrGenAIRequestID), f.requestID)
		assert.Equal(t, attrvalue.String(attrs, schema.AttrGenAIResponseModel), f.responseModel)
		assert.Equal(t, attrvalue.String(attrs, schema.AttrGenAIRequestModel), f.requestModel)
	}
}
