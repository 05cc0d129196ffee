//go:build race

package badinput

// raceSlowdown widens the time bounds under the race detector.
const raceSlowdown = 5
