//go:build !race

package badinput

// raceSlowdown widens the time bounds under the race detector; without it
// the bounds are the issue's.
const raceSlowdown = 1
