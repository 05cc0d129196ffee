//go:build race

package worker

// raceSlowdown widens wall-clock bounds under the race detector, which
// slows encoding and validation several times over; the plain run
// measures the bounds.
const raceSlowdown = 5
