//go:build race

package accuracy

// raceEnabled is set when the race detector is on: it makes the simulator and the pipelines several times
// slower, too slow for the long cases within the time `make test` gives this package.
const raceEnabled = true
